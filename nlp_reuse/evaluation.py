"""Measurements: test metrics (offline, scikit-learn), CPU latency, size on disk, and the printed report table."""

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import transformers
from sklearn.metrics import accuracy_score, f1_score

from nlp_reuse.files import WEIGHT_FILES
from nlp_reuse.predict import eval_mode, predict_logits
from nlp_reuse.tables import render_table


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (every class weighs the same, so rare classes count)."""
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


def compute_metrics(eval_pred) -> dict[str, float]:
    """`Trainer(compute_metrics=...)` hook: logits -> accuracy and macro-F1."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return classification_metrics(np.argmax(logits, axis=-1), labels)


def measure_latency(predict: Callable[[Sequence[str]], object], texts: Sequence[str], batch_size: int = 1,
                    warmup: int = 5, max_batches: int | None = None) -> dict[str, float]:
    """Wall time of `predict(batch_of_texts)` (tokenization included), per batch and per example.

    Returns p50/p95/mean milliseconds per batch and examples per second. Run on a quiet machine; compare artefacts
    measured in the same process, side by side.
    """
    batches = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    if max_batches is not None:
        batches = batches[:max_batches]
    if not batches:
        raise ValueError("measure_latency needs at least one text.")
    for batch in batches[:warmup]:
        predict(batch)
    times = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1e3
    n_examples = sum(len(b) for b in batches)
    return {
        "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean()),
        "throughput": float(n_examples / sum(times)), "batch_size": batch_size, "num_batches": len(batches),
    }


def torch_predictor(model, tokenizer, max_length: int = 128) -> Callable[[Sequence[str]], np.ndarray]:
    """Texts -> predicted label ids with a PyTorch model on CPU (what a user's service would run); one call is one
    forward pass over the texts it gets."""
    model = model.to("cpu")  # once, not per timed call

    def predict(texts: Sequence[str]) -> np.ndarray:
        return predict_logits(model, texts, tokenizer=tokenizer, batch_size=len(texts), max_length=max_length
                              ).argmax(-1)

    return predict


def torch_latency_ms(model, tokenizer, texts: Sequence[str], max_length: int = 128) -> float:
    """Median CPU milliseconds to classify one text (batch 1, tokenization included)."""
    if not texts:
        return float("nan")
    with eval_mode(model):  # switched once around the timing, not inside every timed call
        return measure_latency(torch_predictor(model, tokenizer, max_length), texts, batch_size=1)["p50_ms"]


def size_on_disk_mb(folder: str | Path) -> float:
    """Size of the weight files in a model folder (config and tokenizer excluded), in MB (10^6 bytes)."""
    folder = Path(folder)
    total = sum((folder / name).stat().st_size for name in WEIGHT_FILES if (folder / name).is_file())
    if total == 0:
        raise FileNotFoundError(f"No weight file ({', '.join(WEIGHT_FILES)}) in {folder}.")
    return total / 1e6


def environment() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "num_threads": torch.get_num_threads(),
            "machine": platform.machine()}


MODEL_ROWS = ("teacher", "student", "baseline")


def report_rows(report: dict) -> list[tuple[str, dict]]:
    """(name, entry) for every measured model in a report, in display order."""
    rows = [(name, report[name]) for name in (*MODEL_ROWS, "model") if name in report]
    rows += [(name, entry) for name, entry in report.get("artefacts", {}).items()]
    return rows


def format_table(report: dict) -> str:
    """The report as an aligned text table: one row per model."""
    header = ("model", "layers", "params", "size MB", "accuracy", "macro-F1", "latency ms")
    rows = []
    for name, entry in report_rows(report):
        test = entry.get("test", {})
        rows.append((
            name, str(entry.get("num_layers", "-")), f"{entry.get('params', 0) / 1e6:.1f}M",
            f"{entry['size_mb']:.1f}", f"{test.get('accuracy', float('nan')):.4f}",
            f"{test.get('macro_f1', float('nan')):.4f}", f"{entry.get('latency_ms', float('nan')):.2f}",
        ))
    out = [render_table(header, rows)]
    if "retention" in report:
        out.append(f"retention (student / teacher accuracy): {report['retention']:.4f}")
    return "\n".join(out)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return float(statistics.mean(values)), float(statistics.stdev(values)) if len(values) > 1 else 0.0


def summarize_seeds(reports: dict[int, dict]) -> dict:
    """Mean and spread over seeds of the test accuracy / macro-F1 of each model, and of the retention."""
    names = [n for n in MODEL_ROWS if all(n in r for r in reports.values())]
    summary = {"seeds": sorted(reports), "models": {}}
    for name in names:
        summary["models"][name] = {
            metric: dict(zip(("mean", "std"), mean_std([r[name]["test"][metric] for r in reports.values()])))
            for metric in ("accuracy", "macro_f1")
        }
    summary["retention"] = dict(zip(("mean", "std"), mean_std([r["retention"] for r in reports.values()])))
    if "baseline" in names:
        gains = [r["student"]["test"]["accuracy"] - r["baseline"]["test"]["accuracy"] for r in reports.values()]
        summary["kd_gain_over_baseline"] = dict(zip(("mean", "std"), mean_std(gains)))
        summary["kd_ahead_in_seeds"] = sum(g > 0 for g in gains)
    return summary


def format_seed_table(reports: dict[int, dict], summary: dict) -> str:
    """Per-seed accuracies, then mean ± std, as a Markdown table."""
    names = list(summary["models"])
    rows = [(str(seed), *(f"{reports[seed][n]['test']['accuracy']:.4f}" for n in names),
             f"{reports[seed]['retention']:.4f}") for seed in summary["seeds"]]
    rows.append(("mean ± std", *(f"{summary['models'][n]['accuracy']['mean']:.4f} ± "
                                 f"{summary['models'][n]['accuracy']['std']:.4f}" for n in names),
                 f"{summary['retention']['mean']:.4f} ± {summary['retention']['std']:.4f}"))
    lines = [render_table(("seed", *(f"{n} acc" for n in names), "retention"), rows, markdown=True)]
    if "kd_gain_over_baseline" in summary:
        gain = summary["kd_gain_over_baseline"]
        lines.append(f"\nKD student - baseline accuracy: {gain['mean'] * 100:+.2f} ± {gain['std'] * 100:.2f} points; "
                     f"KD ahead in {summary['kd_ahead_in_seeds']} of {len(summary['seeds'])} seeds.")
    return "\n".join(lines)
