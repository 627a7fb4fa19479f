"""The one table renderer behind every printed and written table (run report, seeds, strategies, benchmark)."""

from collections.abc import Sequence


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """Cells already formatted as strings; an aligned text table for the terminal, or a Markdown table."""
    cells = [tuple(header), *(tuple(row) for row in rows)]
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in cells]
        lines.insert(1, "|" + "---|" * len(header))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
