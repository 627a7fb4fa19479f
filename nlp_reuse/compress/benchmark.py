"""CPU benchmark of model folders and ONNX folders: accuracy, macro-F1, size, parameters, latency, throughput.

Each folder is loaded as a predictor (PyTorch, pruned, low-rank, ONNX fp32/int8) and measured with a fixed thread
count; timing and metrics are the project's (`nlp_reuse.evaluation.measure_latency` / `classification_metrics`).
One table is written as JSON, Markdown and a PNG plot (accuracy vs batch-1 latency, marker area ~ size on disk).

Timings are end to end (tokenization + forward) on the texts given, which is what a deployed classifier pays.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlp_reuse.compress.artifacts import load_classifier, read_compression_info
from nlp_reuse.compress.onnx_export import OnnxClassifier, onnx_logits
from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.evaluation import classification_metrics, environment, measure_latency, size_on_disk_mb
from nlp_reuse.files import LOW_RANK_INFO_NAME
from nlp_reuse.modeling import count_parameters
from nlp_reuse.predict import predict_logits
from nlp_reuse.tables import render_table

logger = logging.getLogger(__name__)


def set_num_threads(num_threads: int) -> int:
    """Fix PyTorch's intra-op thread count (ONNX sessions get theirs in `load_predictor`); returns it."""
    if num_threads < 1:
        raise ModelError(format_error("Bad thread count.", "num_threads >= 1", repr(num_threads),
                                      "pass e.g. --num_threads 2"))
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


class TorchClassifier:
    """Text in, logits out, for a PyTorch model folder (plain, pruned or low-rank); one call is one forward pass."""

    def __init__(self, model_dir: str | Path, max_length: int = 128):
        self.folder = Path(model_dir)
        self.model, self.tokenizer = load_classifier(self.folder)
        self.config = self.model.config
        self.max_length = max_length

    def logits(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """(len(texts), num_labels) float32 logits, in batches of `batch_size` (default: all texts at once)."""
        return predict_logits(self.model, texts, tokenizer=self.tokenizer, batch_size=batch_size or len(texts),
                              max_length=self.max_length)

    __call__ = logits

    def num_parameters(self) -> int:
        return count_parameters(self.model)


def onnx_num_parameters(onnx_path: str | Path) -> int:
    """Number of stored weight values (all initializers, int8 and fp32 alike) in an ONNX file."""
    import onnx

    model = onnx.load(str(onnx_path))
    return int(sum(int(np.prod(init.dims)) for init in model.graph.initializer))


def load_predictor(folder: str | Path, num_threads: int | None = None, max_length: int = 128):
    """An OpenVINO folder (openvino_model.xml) becomes an `OpenVinoClassifier`, an ONNX folder (has a .onnx file) an
    `OnnxClassifier`, anything else a `TorchClassifier`."""
    from nlp_reuse.compress.openvino_export import OpenVinoClassifier, is_openvino_folder

    folder = Path(folder)
    if is_openvino_folder(folder):
        return OpenVinoClassifier(folder, num_threads=num_threads, max_length=max_length)
    if folder.is_dir() and list(folder.glob("*.onnx")):
        return OnnxClassifier(folder, num_threads=num_threads, max_length=max_length)
    return TorchClassifier(folder, max_length=max_length)


def describe_variant(folder: str | Path, config=None) -> str:
    """Human label of a folder from its compression.json and config, e.g. 'ONNX int8 dynamic (pruned 6/24)'."""
    folder = Path(folder)
    info = read_compression_info(folder)
    is_onnx = bool(list(folder.glob("*.onnx")))
    base = "OpenVINO" if info.get("format") == "openvino" else "ONNX" if is_onnx else "PyTorch"
    precision = info.get("precision", "fp32")
    label = f"{base} {precision}"
    if info.get("quantization"):
        label += f" {info['quantization']}"
        if info["quantization"] == "static":
            label += f"/{info.get('calibration_method')}"
    extras = []
    pruned = info.get("pruned_heads")
    if pruned is None and config is not None and getattr(config, "pruned_heads", None):
        pruned = f"{sum(len(h) for h in config.pruned_heads.values())} heads"
    if pruned and not str(pruned).startswith("0/"):
        extras.append(f"pruned {pruned}")
    if info.get("ffn_width"):
        extras.append(f"FFN {info['ffn_width']}")
    if info.get("low_rank") or (folder / LOW_RANK_INFO_NAME).is_file():
        extras.append(f"low-rank {info.get('low_rank', '')}".strip())
    if info.get("magnitude_sparsity"):
        extras.append(f"sparsity {info['magnitude_sparsity']}")
    if info.get("optimization"):
        extras.append(info["optimization"])
    return label + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class BenchmarkRow:
    """One model variant measured on one labelled test set."""

    name: str
    path: str
    variant: str
    accuracy: float
    macro_f1: float
    size_mb: float  # weights on disk (model.onnx / *.safetensors), tokenizer excluded
    params: int
    num_layers: int
    latency_b1_p50_ms: float
    latency_b1_p95_ms: float
    throughput_b32_per_s: float
    num_threads: int
    num_examples: int

    def to_dict(self) -> dict:
        return asdict(self)


def benchmark_folder(folder: str | Path, texts: list[str], labels: list, *, name: str | None = None,
                     num_threads: int = 2, max_length: int = 128, latency_calls: int = 100,
                     throughput_calls: int = 10, throughput_batch_size: int = 32) -> BenchmarkRow:
    """Accuracy, macro-F1, size, parameters, batch-1 latency and batch-`throughput_batch_size` throughput."""
    from nlp_reuse.compress.labels import encode_labels

    folder = Path(folder)
    set_num_threads(num_threads)
    predictor = load_predictor(folder, num_threads=num_threads, max_length=max_length)
    config = predictor.config
    gold = encode_labels(labels, {str(k): int(v) for k, v in config.label2id.items()})
    logits = (predictor.logits(texts, batch_size=64) if isinstance(predictor, TorchClassifier)
              else onnx_logits(predictor, texts, batch_size=64))
    metrics = classification_metrics(logits.argmax(-1), np.asarray(gold))
    single = measure_latency(predictor.logits, texts, batch_size=1, max_batches=latency_calls)
    # Tile the texts so every timed call gets a full batch even on a small test set.
    tiled = list(texts) * math.ceil(throughput_batch_size * throughput_calls / len(texts))
    batched = measure_latency(predictor.logits, tiled[:throughput_batch_size * throughput_calls],
                              batch_size=throughput_batch_size, warmup=1)
    params = (onnx_num_parameters(predictor.onnx_path) if isinstance(predictor, OnnxClassifier)
              else predictor.num_parameters())
    return BenchmarkRow(
        name=name or folder.name, path=str(folder), variant=describe_variant(folder, config),
        accuracy=metrics["accuracy"], macro_f1=metrics["macro_f1"], size_mb=round(size_on_disk_mb(folder), 3),
        params=params, num_layers=int(config.num_hidden_layers), latency_b1_p50_ms=single["p50_ms"],
        latency_b1_p95_ms=single["p95_ms"], throughput_b32_per_s=batched["throughput"], num_threads=num_threads,
        num_examples=len(texts),
    )


def run_benchmark(folders: Sequence[str | Path], texts: list[str], labels: list, *,
                  names: Sequence[str] | None = None, **kwargs) -> list[BenchmarkRow]:
    """`benchmark_folder` for each folder (kwargs forwarded); every folder is checked before any is timed."""
    if names is not None and len(names) != len(folders):
        raise ModelError(format_error("names and folders differ in length.", f"{len(folders)} names",
                                      f"{len(names)}", "give one name per folder, or none"))
    for folder in folders:  # fail on a bad folder before minutes of timing the good ones
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(format_error("Benchmark folder not found.", "a model or ONNX folder",
                                                 f"no folder at {folder}", "check the --models paths"))
    if names is None:
        names = [Path(f).name for f in folders]
        if len(set(names)) < len(names):  # e.g. two runs' onnx_int8/: name rows parent/folder instead
            names = [f"{Path(f).parent.name}/{Path(f).name}" for f in folders]
    rows = []
    for folder, name in zip(folders, names):
        row = benchmark_folder(folder, texts, labels, name=name, **kwargs)
        logger.info("%s: acc %.4f, p50 %.2f ms", row.name, row.accuracy, row.latency_b1_p50_ms)
        rows.append(row)
    return rows


_COLUMNS = [("name", "model", "{}"), ("variant", "variant", "{}"), ("accuracy", "accuracy", "{:.4f}"),
            ("macro_f1", "macro-F1", "{:.4f}"), ("size_mb", "size MB", "{:.2f}"), ("params", "params", "{:,}"),
            ("num_layers", "layers", "{}"), ("latency_b1_p50_ms", "b1 p50 ms", "{:.2f}"),
            ("latency_b1_p95_ms", "b1 p95 ms", "{:.2f}"), ("throughput_b32_per_s", "b32 ex/s", "{:.1f}")]


def format_markdown_table(rows: Sequence[BenchmarkRow]) -> str:
    """The benchmark rows as one Markdown table."""
    return render_table([title for _, title, _ in _COLUMNS],
                        [[fmt.format(getattr(r, key)) for key, _, fmt in _COLUMNS] for r in rows], markdown=True)


def plot_accuracy_vs_latency(rows: Sequence[BenchmarkRow], path: str | Path) -> Path:
    """PNG scatter: batch-1 p50 latency (x) vs accuracy (y), marker area proportional to size on disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    largest = max(r.size_mb for r in rows) or 1.0
    for r in rows:
        ax.scatter(r.latency_b1_p50_ms, r.accuracy, s=40 + 800 * r.size_mb / largest, alpha=0.6)
        ax.annotate(f"{r.name}\n{r.size_mb:.1f} MB", (r.latency_b1_p50_ms, r.accuracy), fontsize=7,
                    textcoords="offset points", xytext=(6, 6))
    latencies = [r.latency_b1_p50_ms for r in rows]
    if max(latencies) > 10 * min(latencies):  # teacher vs int8 student spans more than a decade
        ax.set_xscale("log")
    ax.set_xlabel(f"latency, batch 1, p50 (ms, {rows[0].num_threads} threads)")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs CPU latency (marker area ~ size on disk)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def environment_info(num_threads: int) -> dict[str, Any]:
    import onnxruntime

    info = {**environment(), "onnxruntime": onnxruntime.__version__, "num_threads": num_threads}
    try:
        import openvino

        info["openvino"] = openvino.__version__
    except ImportError:
        pass
    return info


BENCHMARK_FILES = {"json": "benchmark.json", "markdown": "benchmark.md", "plot": "benchmark.png"}


def benchmark_paths(output_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """The files `write_benchmark` writes into `output_dir`; refuses if an earlier benchmark is there, unless
    `overwrite`. Other files in the folder are never touched, so a benchmark can live inside a run folder.

    Call it before measuring (as scripts/benchmark.py does) so a refusal costs no minutes of timing.
    """
    out = Path(output_dir)
    paths = {kind: out / name for kind, name in BENCHMARK_FILES.items()}
    earlier = [path.name for path in paths.values() if path.exists()]
    if earlier and not overwrite:
        raise FileExistsError(format_error(
            f"Output folder {out} already holds benchmark results; refusing to replace them.",
            f"a folder without {', '.join(BENCHMARK_FILES.values())}", ", ".join(earlier),
            "choose another --output_dir, or pass --overwrite true to replace what an earlier benchmark wrote there",
        ))
    return paths


def write_benchmark(rows: Sequence[BenchmarkRow], output_dir: str | Path, *, extra: dict | None = None,
                    overwrite: bool = False) -> dict[str, Path]:
    """Write benchmark.json (rows + environment + `extra`), benchmark.md and benchmark.png into `output_dir`.

    An earlier benchmark there is refused unless `overwrite` (see `benchmark_paths`)."""
    if not rows:
        raise ModelError(format_error("Nothing to write.", "at least one benchmark row", "none",
                                      "benchmark at least one folder"))
    paths = benchmark_paths(output_dir, overwrite=overwrite)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    payload = {"rows": [r.to_dict() for r in rows], "environment": environment_info(rows[0].num_threads),
               **(extra or {})}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")
    threads = f"CPU, {rows[0].num_threads} threads (torch.set_num_threads and ORT intra_op_num_threads)"
    paths["markdown"].write_text(f"{format_markdown_table(rows)}\n\n{threads}; {rows[0].num_examples} test texts; "
                                 "latency is end to end (tokenization + forward).\n")
    plot_accuracy_vs_latency(rows, paths["plot"])
    return paths


def report_entry(row: BenchmarkRow, name_or_path: str | None = None, path: str | None = None) -> dict[str, Any]:
    """A row in the run-report schema: {name_or_path, params, num_layers, size_mb, test: {accuracy, macro_f1},
    latency_ms, path} (latency_ms is batch-1 p50)."""
    entry = {"name_or_path": name_or_path or row.path, "params": row.params, "num_layers": row.num_layers,
             "size_mb": row.size_mb, "test": {"accuracy": row.accuracy, "macro_f1": row.macro_f1},
             "latency_ms": row.latency_b1_p50_ms}
    if path is not None:
        entry["path"] = path
    return entry


def speedup_summary(rows: Sequence[BenchmarkRow], reference: str, candidate: str) -> dict[str, float]:
    """Ratios candidate vs reference (by row name): speed-up at batch 1, size fraction, accuracy difference."""
    by_name = {r.name: r for r in rows}
    missing = [n for n in (reference, candidate) if n not in by_name]
    if missing:
        raise ModelError(format_error("Row not in the benchmark.", f"names among {sorted(by_name)}", str(missing),
                                      "pass --compare with names from --names"))
    ref, cand = by_name[reference], by_name[candidate]
    return {"speedup_b1_p50": ref.latency_b1_p50_ms / cand.latency_b1_p50_ms,
            "throughput_ratio_b32": cand.throughput_b32_per_s / ref.throughput_b32_per_s,
            "size_fraction": cand.size_mb / ref.size_mb if ref.size_mb else float("nan"),
            "accuracy_diff_points": (cand.accuracy - ref.accuracy) * 100}


__all__ = [
    "BENCHMARK_FILES",
    "BenchmarkRow",
    "TorchClassifier",
    "benchmark_folder",
    "benchmark_paths",
    "describe_variant",
    "environment_info",
    "format_markdown_table",
    "load_predictor",
    "onnx_num_parameters",
    "plot_accuracy_vs_latency",
    "report_entry",
    "run_benchmark",
    "set_num_threads",
    "speedup_summary",
    "write_benchmark",
]
