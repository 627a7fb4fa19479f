"""The frontier's outputs: the main table (speed-up, retention, Pareto front), the ablation table (KD against no KD,
the transfer set, vocabulary trimming), frontier.json / frontier.md and the accuracy-vs-latency plot (log scale)."""

import statistics
from collections.abc import Sequence
from pathlib import Path

from nlp_reuse.files import write_json
from nlp_reuse.frontier.measure import FrontierRow
from nlp_reuse.report import RunReport
from nlp_reuse.tables import render_table

FRONTIER_FILES = {"json": "frontier.json", "markdown": "frontier.md", "plot": "frontier.png"}


def _pm(mean: float | None, std: float | None, scale: float = 100.0, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean * scale:.{digits}f} ± {(std or 0.0) * scale:.{digits}f}"


def frontier_table(teacher: FrontierRow, rows: Sequence[FrontierRow], markdown: bool = True) -> str:
    """Every model, fastest first: accuracy (mean ± std over seeds), the no-KD baseline, retention, batch-1 p50,
    speed-up over the fp32 PyTorch teacher, batch-32 throughput, size, parameters, training time, Pareto mark."""
    header = ("model", "variant", "seeds", "accuracy %", "no-KD %", "macro-F1 %", "retention %", "b1 p50 ms",
              "speed-up", "b32 ex/s", "size MB", "params", "train s", "front")
    body = []
    for r in sorted([teacher, *rows], key=lambda r: r.latency_b1_p50_ms):
        body.append((
            r.name, r.variant, ",".join(map(str, r.seeds)) or "-", _pm(r.accuracy, r.accuracy_std),
            _pm(r.baseline_accuracy, r.baseline_accuracy_std),
            _pm(r.macro_f1, r.macro_f1_std), _pm(r.retention, r.retention_std, digits=1),
            f"{r.latency_b1_p50_ms:.3f}", f"{r.speedup_b1:.1f}x", f"{r.throughput_b32_per_s:,.0f}",
            f"{r.size_mb:.2f}", f"{r.params:,}", "-" if r.train_time_s is None else f"{r.train_time_s:.0f}",
            "*" if r.pareto else "",
        ))
    return render_table(header, body, markdown=markdown)


def ablation(reports: dict[str, dict[int, RunReport]]) -> list[dict]:
    """Per student: KD against its no-KD baseline, the transfer set it learnt from, and what trimming did."""
    out = []
    for name, by_seed in reports.items():
        runs = list(by_seed.values())
        kd = [r.student.test["accuracy"] for r in runs]
        base = [r.baseline.test["accuracy"] for r in runs if r.baseline is not None]
        entry = {"student": name, "student_type": runs[0].distillation.student_type or "transformer",
                 "init": runs[0].distillation.student_init, "kd_loss": runs[0].distillation.kd_loss or "kl",
                 "transfer": runs[0].transfer_set, "kd": _stats(kd), "no_kd": _stats(base) if base else None,
                 "kd_gain_points": _stats([(a - b) * 100 for a, b in zip(kd, base)]) if base else None,
                 "params": runs[0].student.params, "size_mb": runs[0].student.size_mb, "vocabulary": None}
        vocab = runs[0].vocabulary
        if vocab:
            entry["vocabulary"] = {
                "before": vocab["before"], "after": vocab["after"], "params_before": vocab.get("params_before"),
                "untrimmed_accuracy": _stats([r.vocabulary["untrimmed_test"]["accuracy"] for r in runs]),
                "trimmed_accuracy": _stats(kd)}
        out.append(entry)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def ablation_table(entries: list[dict], markdown: bool = True) -> str:
    header = ("student", "type", "soft loss", "transfer set", "KD acc %", "no-KD acc %", "KD gain (points)",
              "vocabulary", "untrimmed acc %", "params (untrimmed)")
    body = []
    for e in entries:
        transfer = e["transfer"]
        described = "-" if not transfer else (
            f"{transfer['num_transfer']:,} ({'+'.join(transfer['augment']) or 'unlabeled'}"
            + (f" x{transfer['augment_factor']}" if transfer["augment"] else "") + ")")
        vocab = e["vocabulary"]
        gain = e["kd_gain_points"]
        body.append((
            e["student"], e["student_type"], e["kd_loss"], described,
            _pm(e["kd"]["mean"], e["kd"]["std"]),
            "-" if e["no_kd"] is None else _pm(e["no_kd"]["mean"], e["no_kd"]["std"]),
            "-" if gain is None else f"{gain['mean']:+.2f} ± {gain['std']:.2f}",
            "-" if vocab is None else f"{vocab['before']:,} -> {vocab['after']:,}",
            "-" if vocab is None else _pm(vocab["untrimmed_accuracy"]["mean"], vocab["untrimmed_accuracy"]["std"]),
            f"{e['params']:,}" + ("" if not vocab or vocab["params_before"] is None
                                  else f" ({vocab['params_before']:,})"),
        ))
    return render_table(header, body, markdown=markdown)


def plot_frontier(teacher: FrontierRow, rows: Sequence[FrontierRow], path: Path,
                  budget_ms: float | None = None) -> Path:
    """Accuracy against batch-1 p50 latency (log scale), spread over seeds as error bars, the front as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = [teacher, *rows]
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in everything:
        ax.errorbar(r.latency_b1_p50_ms, r.accuracy * 100, yerr=r.accuracy_std * 100,
                    xerr=r.latency_b1_p50_ms_std, fmt="o" if r.pareto else "s", alpha=0.9 if r.pareto else 0.45,
                    capsize=2)
        ax.annotate(f"{r.name}\n{r.speedup_b1:.0f}x, {r.size_mb:.1f} MB", (r.latency_b1_p50_ms, r.accuracy * 100),
                    fontsize=6.5, textcoords="offset points", xytext=(5, 4))
    front = sorted((r for r in everything if r.pareto), key=lambda r: r.latency_b1_p50_ms)
    ax.step([r.latency_b1_p50_ms for r in front], [r.accuracy * 100 for r in front], where="post", color="grey",
            linewidth=1, label="Pareto front")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="red", linestyle=":", linewidth=1, label=f"budget {budget_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, batch 1, p50 (ms, log scale, {teacher.per_seed[0]['num_threads']} threads)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("speed frontier: students vs the fp32 PyTorch teacher (mean ± std over seeds)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_frontier(root: Path, teacher: FrontierRow, rows: Sequence[FrontierRow], entries: list[dict],
                   extra: dict) -> dict[str, Path]:
    paths = {kind: root / name for kind, name in FRONTIER_FILES.items()}
    write_json(paths["json"], {"teacher": teacher.to_dict(), "rows": [r.to_dict() for r in rows],
                               "ablation": entries, **extra})
    threads = teacher.per_seed[0]["num_threads"]
    notes = (f"CPU, {threads} threads; {teacher.per_seed[0]['num_examples']} test texts; latency end to end "
             "(tokenization + forward), all rows timed in one process; mean ± std over the row's seeds (an int8 row "
             "holds the seeds whose int8 model passed the accuracy guard); * = Pareto front.")
    budget = extra.get("latency_budget")
    text = [f"## Frontier\n\n{frontier_table(teacher, rows)}\n\n{notes}\n"]
    if budget:
        text.append(f"Most accurate within {budget['ms']:g} ms: **{budget['pick'] or 'none'}**.\n")
    text.append(f"## KD, transfer set and vocabulary trimming\n\n{ablation_table(entries)}\n")
    paths["markdown"].write_text("\n".join(text))
    plot_frontier(teacher, rows, paths["plot"], budget["ms"] if budget else None)
    return paths
