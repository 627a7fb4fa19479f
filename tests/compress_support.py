"""Texts shared by the compression tests (tests/test_compress.py, tests/test_compress_shrink.py); their model
fixtures (trained_dir, trained_onnx, wide_dir) are in conftest.py."""

from conftest import make_examples

# Mixed lengths so padding and attention masks are exercised.
TEXTS = [r["text"] for r in make_examples(9, seed=7)] + ["good", "the movie was really quite awful and boring " * 3]


def rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    """`n` synthetic (texts, labels)."""
    examples = make_examples(n, seed)
    return [r["text"] for r in examples], [r["label"] for r in examples]
