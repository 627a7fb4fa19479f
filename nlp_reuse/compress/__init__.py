"""Compression and deployment: ONNX export, int8 quantization with an accuracy guard, head / magnitude pruning,
low-rank factorization, and the CPU benchmark that measures every variant.

Import what you need from here; `export_model` runs the whole chain and `run_benchmark` measures the results
(timing with `nlp_reuse.evaluation.measure_latency`).
"""

from nlp_reuse.compress.artifacts import (
    check_model_dir,
    create_ort_session,
    load_classifier,
    load_tokenizer,
)
from nlp_reuse.compress.benchmark import (
    BenchmarkRow,
    benchmark_folder,
    load_predictor,
    report_entry,
    run_benchmark,
    set_num_threads,
    write_benchmark,
)
from nlp_reuse.compress.low_rank import LowRankLinear, apply_low_rank, load_low_rank_model, save_low_rank_model
from nlp_reuse.compress.onnx_export import OnnxClassifier, check_onnx_parity, export_onnx, optimize_onnx
from nlp_reuse.compress.pipeline import ExportResult, export_model
from nlp_reuse.compress.prune import (
    compute_head_importance,
    magnitude_prune,
    prune_heads_by_importance,
    recovery_finetune,
)
from nlp_reuse.compress.quantize import (
    AccuracyDropWarning,
    GuardResult,
    accuracy_guard,
    count_quantized_ops,
    detect_cpu_isa,
    quantize_dynamic,
    quantize_static,
)

__all__ = [
    "AccuracyDropWarning",
    "BenchmarkRow",
    "ExportResult",
    "GuardResult",
    "LowRankLinear",
    "OnnxClassifier",
    "accuracy_guard",
    "apply_low_rank",
    "benchmark_folder",
    "check_model_dir",
    "check_onnx_parity",
    "compute_head_importance",
    "count_quantized_ops",
    "create_ort_session",
    "detect_cpu_isa",
    "export_model",
    "export_onnx",
    "load_classifier",
    "load_low_rank_model",
    "load_predictor",
    "load_tokenizer",
    "magnitude_prune",
    "optimize_onnx",
    "prune_heads_by_importance",
    "quantize_dynamic",
    "quantize_static",
    "recovery_finetune",
    "report_entry",
    "run_benchmark",
    "save_low_rank_model",
    "set_num_threads",
    "write_benchmark",
]
