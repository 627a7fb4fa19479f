"""What a strategy run cost (trainable parameters, wall time, peak memory), its summary for report.json, and the
comparison table of scripts/compare_strategies.py."""

import logging
import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from nlp_reuse.strategies.adapters import PEFT_STRATEGIES, target_module_names
from nlp_reuse.strategy_config import StrategyArguments
from nlp_reuse.tables import render_table

logger = logging.getLogger(__name__)


@dataclass
class TrainingCost:
    """What one training run cost: parameters it trained, wall time, peak memory."""

    trainable_params: int = 0
    total_params: int = 0
    train_runtime_s: float = 0.0
    peak_memory_mb: float = 0.0
    peak_memory_kind: str = ""

    def as_dict(self) -> dict:
        return {"trainable_params": self.trainable_params, "total_params": self.total_params,
                "trainable_fraction": round(self.trainable_params / self.total_params, 6),
                "train_runtime_s": round(self.train_runtime_s, 2), "peak_memory_mb": round(self.peak_memory_mb, 1),
                "peak_memory_kind": self.peak_memory_kind}


def _reset_peak_memory(device: torch.device) -> str:
    """Start a fresh peak; returns what will be measured."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        # Linux: writing 5 resets the process's peak RSS (VmHWM, also what ru_maxrss reports).
        Path("/proc/self/clear_refs").write_text("5")
        return "cpu_peak_rss"
    except OSError as err:
        logger.info("Cannot reset the peak RSS (%s): reporting the peak since the process started.", err)
        return "cpu_peak_rss_since_process_start"


def _peak_memory_mb(device: torch.device, kind: str) -> float:
    if kind == "cuda_max_allocated":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "cpu_peak_rss":  # the peak that clear_refs reset (ru_maxrss may also hold exited threads' peaks)
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@contextmanager
def measure_training(device: torch.device) -> Iterator[TrainingCost]:
    """Times the block and records its peak memory (CUDA allocations on GPU, resident set size on CPU)."""
    cost = TrainingCost(peak_memory_kind=_reset_peak_memory(device))
    start = time.perf_counter()
    yield cost
    cost.train_runtime_s = time.perf_counter() - start
    cost.peak_memory_mb = _peak_memory_mb(device, cost.peak_memory_kind)


def strategy_summary(args: StrategyArguments) -> dict:
    """The strategy and the arguments it used, for report.json."""
    summary = {"strategy": args.strategy, "layerwise_lr_decay": args.layerwise_lr_decay}
    if args.strategy == "partial":
        summary.update(unfreeze_top_k=args.unfreeze_top_k, gradual_unfreeze_every=args.gradual_unfreeze_every)
    if args.strategy in PEFT_STRATEGIES:
        summary.update(target_modules=target_module_names(args), merge_adapter=args.merge_adapter)
    if args.strategy == "lora":
        summary.update(lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    if args.strategy == "features":
        summary.update(features_logreg_c=args.features_logreg_c, pooling="mean")
    return summary


def strategy_row(report: dict) -> dict:
    """One row of the strategy comparison from a scripts/finetune.py report.json."""
    ft, model = report["finetuning"], report["model"]
    return {
        "strategy": ft["strategy"], "trainable_params": ft["trainable_params"],
        "trainable_fraction": ft["trainable_fraction"], "train_runtime_s": ft["train_runtime_s"],
        "peak_memory_mb": ft["peak_memory_mb"],
        "learning_rate": None if ft["strategy"] == "features" else ft["learning_rate"],
        "accuracy": model["test"]["accuracy"], "macro_f1": model["test"]["macro_f1"],
        "latency_ms": model["latency_ms"],
    }


def format_strategy_table(rows: list[dict], markdown: bool = False) -> str:
    """The comparison as an aligned text table, or as a Markdown table."""
    header = ("strategy", "trainable params", "trainable %", "train time s", "peak MB", "learning rate",
              "accuracy", "macro-F1", "latency ms")
    cells = [(
        r["strategy"], f"{r['trainable_params']:,}", f"{100 * r['trainable_fraction']:.2f}",
        f"{r['train_runtime_s']:.1f}", f"{r['peak_memory_mb']:.0f}",
        "-" if r["learning_rate"] is None else f"{r['learning_rate']:g}", f"{r['accuracy']:.4f}",
        f"{r['macro_f1']:.4f}", f"{r['latency_ms']:.2f}",
    ) for r in rows]
    return render_table(header, cells, markdown)
