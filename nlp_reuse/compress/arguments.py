"""Argument dataclasses of scripts/export.py and scripts/benchmark.py, range-checked in __post_init__ so a bad value
fails before any model is loaded. The scripts parse them together with `nlp_reuse.config.DataArguments` (where the
texts come from: --dataset_name builtin:trec6 or --train_file/--validation_file/--test_file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nlp_reuse.compress.onnx_export import OPTIMIZATION_LEVELS
from nlp_reuse.errors import ConfigError, format_error


def _fraction(name: str, value: float, low_open: bool = False, high_open: bool = True) -> None:
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ConfigError(format_error(f"--{name} out of range.", f"a value in {interval}", repr(value),
                                      f"pass e.g. --{name} 0.5"))


@dataclass
class ExportArguments:
    """scripts/export.py: model folder -> (pruned / low-rank) -> ONNX -> optimized -> int8, with an accuracy guard."""

    model_dir: str = field(default=None, metadata={"help": "Sequence-classification model folder to export "
                                                           "(e.g. RUN/student)."})
    output_dir: str = field(default=None, metadata={"help": "Export root; onnx/, onnx_int8/ (and pytorch/) are "
                                                            "written inside it. A run folder is fine."})
    quantization: Literal["none", "dynamic", "static"] = field(
        default="dynamic", metadata={"help": "int8 quantization: none, dynamic (weights int8, activations at run "
                                             "time) or static (activations calibrated on training texts). The "
                                             "validation split feeds the accuracy guard."})
    calibration_samples: int = field(default=128, metadata={"help": "Training texts used to calibrate static "
                                                                    "quantization (a seeded sample)."})
    calibration_method: Literal["minmax", "entropy", "percentile"] = field(
        default="minmax", metadata={"help": "How static quantization sets activation ranges."})
    calibration_percentile: float = field(default=99.999, metadata={"help": "Percentile for "
                                                                            "--calibration_method percentile."})
    optimize: str | None = field(default=None, metadata={"help": "ONNX Runtime graph optimization for CPU: O1 "
                                                                 "(basic), O2 (+ BERT fusions), O3 (+ fast GELU)."})
    max_accuracy_drop: float = field(default=1.0, metadata={"help": "Largest allowed validation accuracy drop of "
                                                                    "int8 vs fp32 ONNX, in points; beyond it the "
                                                                    "fp32 ONNX stays the deliverable."})
    isa: str | None = field(default=None, metadata={"help": "CPU instruction set for the quantization config "
                                                            "(avx512_vnni, avx512, avx2, arm64); detected if unset."})
    prune_heads_fraction: float = field(default=0.0, metadata={"help": "Fraction of attention heads to remove, "
                                                                       "least important first (Michel et al. 2019)."})
    head_importance_samples: int = field(default=512, metadata={"help": "Training texts scored for head "
                                                                        "importance (the first N)."})
    magnitude_prune_amount: float = field(default=0.0, metadata={"help": "Fraction of each encoder Linear's "
                                                                         "smallest weights to zero (permanent)."})
    low_rank_ratio: float | None = field(default=None, metadata={"help": "Factorize encoder Linear layers keeping "
                                                                         "this fraction of their weights (0-1)."})
    low_rank_energy: float | None = field(default=None, metadata={"help": "Factorize encoder Linear layers keeping "
                                                                          "this fraction of squared singular values."})
    low_rank_targets: list[str] | None = field(default=None, metadata={"help": "Module-name suffixes to "
                                                                               "factorize (default: all encoder "
                                                                               "Linear layers), e.g. "
                                                                               "intermediate.dense."})
    recovery_epochs: float = field(default=0.0, metadata={"help": "Epochs of recovery fine-tuning on the training "
                                                                  "file after pruning / factorization (0: none)."})
    recovery_learning_rate: float = field(default=3e-5, metadata={"help": "Learning rate of the recovery "
                                                                          "fine-tune."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing export in --output_dir."})
    seed: int = field(default=42, metadata={"help": "Seed for the calibration sample and recovery fine-tune."})

    def __post_init__(self):
        if not self.model_dir or not self.output_dir:
            raise ConfigError(format_error("Missing folders.", "--model_dir and --output_dir",
                                          f"model_dir={self.model_dir}, output_dir={self.output_dir}",
                                          "pass both"))
        if self.optimize is not None and self.optimize not in OPTIMIZATION_LEVELS:
            raise ConfigError(format_error("Unknown --optimize level.", f"one of {OPTIMIZATION_LEVELS}",
                                          repr(self.optimize), "pass --optimize O2"))
        if self.calibration_samples < 1:
            raise ConfigError(format_error("--calibration_samples too small.", ">= 1",
                                          repr(self.calibration_samples), "pass e.g. --calibration_samples 128"))
        if not 0 < self.calibration_percentile <= 100:
            raise ConfigError(format_error("--calibration_percentile out of range.", "(0, 100]",
                                          repr(self.calibration_percentile), "pass e.g. 99.99"))
        if self.max_accuracy_drop < 0:
            raise ConfigError(format_error("--max_accuracy_drop is negative.", "points >= 0",
                                          repr(self.max_accuracy_drop), "pass e.g. --max_accuracy_drop 1"))
        _fraction("prune_heads_fraction", self.prune_heads_fraction)
        if self.head_importance_samples < 1:
            raise ConfigError(format_error("--head_importance_samples too small.", ">= 1",
                                          repr(self.head_importance_samples), "pass e.g. 512"))
        _fraction("magnitude_prune_amount", self.magnitude_prune_amount)
        if self.low_rank_ratio is not None and self.low_rank_energy is not None:
            raise ConfigError(format_error("Two low-rank rules.", "--low_rank_ratio or --low_rank_energy",
                                          "both", "pass only one"))
        if self.low_rank_ratio is not None:
            _fraction("low_rank_ratio", self.low_rank_ratio, low_open=True)
        if self.low_rank_energy is not None:
            _fraction("low_rank_energy", self.low_rank_energy, low_open=True, high_open=False)
        if self.recovery_epochs < 0:
            raise ConfigError(format_error("--recovery_epochs is negative.", ">= 0", repr(self.recovery_epochs),
                                          "pass 0 to skip recovery"))


@dataclass
class BenchmarkArguments:
    """scripts/benchmark.py: measure model, ONNX and OpenVINO folders on one labelled test file."""

    models: list[str] = field(default_factory=list, metadata={"help": "Model, ONNX and/or OpenVINO folders "
                                                                      "(openvino_model.xml; needs the openvino "
                                                                      "extra) to "
                                                                      "measure, in table order."})
    names: list[str] | None = field(default=None, metadata={"help": "Row names, one per --models entry "
                                                                    "(default: folder names)."})
    output_dir: str = field(default=None, metadata={"help": "Where benchmark.json, benchmark.md and "
                                                            "benchmark.png are written."})
    num_threads: int = field(default=2, metadata={"help": "CPU threads for PyTorch, ONNX Runtime and "
                                                                     "OpenVINO (fixed)."})
    latency_calls: int = field(default=100, metadata={"help": "Timed batch-1 calls per model (p50/p95)."})
    throughput_calls: int = field(default=10, metadata={"help": "Timed batch-32 calls per model (throughput)."})
    compare: list[str] | None = field(default=None, metadata={"help": "Two row names REFERENCE CANDIDATE: report "
                                                                      "speed-up, size fraction, accuracy diff."})
    overwrite: bool = field(default=False, metadata={"help": "Replace benchmark.json, benchmark.md and "
                                                             "benchmark.png already in --output_dir."})

    def __post_init__(self):
        if not self.models or not self.output_dir:
            raise ConfigError(format_error("Missing arguments.", "--models DIR [DIR ...] and --output_dir",
                                          f"models={self.models}, output_dir={self.output_dir}", "pass both"))
        if self.names is not None and len(self.names) != len(self.models):
            raise ConfigError(format_error("--names and --models differ in length.", f"{len(self.models)} names",
                                          f"{len(self.names)}", "give one name per model folder"))
        if self.num_threads < 1 or self.latency_calls < 1 or self.throughput_calls < 1:
            raise ConfigError(format_error("Bad counts.", "--num_threads, --latency_calls, --throughput_calls >= 1",
                                          f"{self.num_threads}, {self.latency_calls}, {self.throughput_calls}",
                                          "use positive values"))
        if self.compare is not None and len(self.compare) != 2:
            raise ConfigError(format_error("--compare takes two names.", "REFERENCE CANDIDATE", str(self.compare),
                                          "e.g. --compare teacher student_int8"))
