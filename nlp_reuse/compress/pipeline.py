"""One call from a model folder to a deployable artefact: prune / factorize -> ONNX -> optimize -> int8 -> guard.

`export_model(model_dir, output_dir, ...)` writes, under `output_dir` (which may be a run folder):

    pytorch/              the pruned and/or low-rank PyTorch model (only when one of them is requested)
    onnx/                 fp32 ONNX (graph-optimized with `optimize`), always
    onnx_int8/            int8 ONNX when quantization passed the accuracy guard
    onnx_int8_rejected/   int8 ONNX kept for inspection when the guard rejected it (never the deliverable)
    export_report.json    every step's numbers and which folder is the deliverable

Only those sub-folders are replaced (with `overwrite`); anything else in `output_dir` is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nlp_reuse.compress.artifacts import (
    format_error,
    load_classifier,
    write_compression_info,
)
from nlp_reuse.compress.labels import encode_labels
from nlp_reuse.compress.low_rank import apply_low_rank, save_low_rank_model
from nlp_reuse.compress.onnx_export import OPTIMIZATION_LEVELS, check_onnx_parity, export_onnx, optimize_onnx
from nlp_reuse.compress.prune import (
    magnitude_prune,
    make_pruning_permanent,
    prune_heads_by_importance,
    recovery_finetune,
)
from nlp_reuse.compress.quantize import (
    CALIBRATION_METHODS,
    QUANTIZATION_MODES,
    accuracy_guard,
    count_quantized_ops,
    detect_cpu_isa,
    quantize_dynamic,
    quantize_static,
)
from nlp_reuse.errors import ModelError
from nlp_reuse.evaluation import size_on_disk_mb
from nlp_reuse.files import prepare_output_dir
from nlp_reuse.modeling import count_parameters

logger = logging.getLogger(__name__)

EXPORT_REPORT_NAME = "export_report.json"
_SUBFOLDERS = ("pytorch", "onnx", "onnx_int8", "onnx_int8_rejected")
# Texts for the ONNX-vs-PyTorch parity check when the caller gives none.
_PARITY_FALLBACK = ["a short sentence", "another, slightly longer sentence to check padding and masks"]


@dataclass
class ExportResult:
    """What `export_model` wrote and measured; `deliverable` is the folder to ship."""

    output_dir: str
    deliverable: str  # path of onnx_int8/ or, when quantization is off or rejected, onnx/
    deliverable_kind: str  # "onnx_int8" or "onnx"
    onnx_dir: str
    quantized_dir: str | None
    pytorch_dir: str | None
    quantization: str
    isa: str | None
    optimization: str | None  # graph optimization of onnx/
    quantized_from_optimization: str | None  # the int8 model is quantized from this level (O1 when optimize is set)
    parity_max_abs_diff: float  # fp32 ONNX vs the (compressed) PyTorch model, on real texts
    sizes_mb: dict[str, float]
    params: dict[str, int]
    guard: dict[str, Any] | None = None
    guard_triggered: bool = False
    quantized_ops: dict[str, int] | None = None
    head_pruning: dict[str, Any] | None = None
    magnitude_sparsity: dict[str, float] | None = None
    low_rank: list[dict[str, Any]] | None = None
    recovery_epochs: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_options(quantization: str, calibration_method: str, optimize: str | None, max_accuracy_drop: float,
                   low_rank_ratio: float | None, low_rank_energy: float | None, validation_texts, validation_labels,
                   train_texts, train_labels, recovery_epochs: float, calibration_samples: int,
                   prune_heads_fraction: float) -> None:
    """Every argument error before any model is loaded."""
    if quantization not in QUANTIZATION_MODES:
        raise ModelError(format_error("Unknown quantization mode.", f"one of {QUANTIZATION_MODES}",
                                      repr(quantization), "pass --quantization none, dynamic or static"))
    if calibration_method not in CALIBRATION_METHODS:
        raise ModelError(format_error("Unknown calibration method.", f"one of {CALIBRATION_METHODS}",
                                      repr(calibration_method), "pass --calibration_method minmax|entropy|percentile"))
    if optimize is not None and optimize not in OPTIMIZATION_LEVELS:
        raise ModelError(format_error("Unknown optimization level.", f"one of {OPTIMIZATION_LEVELS}",
                                      repr(optimize), "pass --optimize O1, O2 or O3"))
    if max_accuracy_drop < 0:
        raise ModelError(format_error("max_accuracy_drop is negative.", "accuracy points >= 0",
                                      repr(max_accuracy_drop), "pass e.g. --max_accuracy_drop 1.0"))
    if low_rank_ratio is not None and low_rank_energy is not None:
        raise ModelError(format_error("Two low-rank rules given.", "low_rank_ratio or low_rank_energy",
                                      f"ratio={low_rank_ratio}, energy={low_rank_energy}", "pass only one"))
    if quantization != "none" and not (validation_texts and validation_labels):
        raise ModelError(format_error("Quantization needs labelled validation texts for the accuracy guard.",
                                      "validation_texts and validation_labels", "none",
                                      "pass --validation_file (or --quantization none)"))
    if validation_texts and validation_labels and len(validation_texts) != len(validation_labels):
        raise ModelError(format_error("Validation texts and labels differ in length.", "equal lengths",
                                      f"{len(validation_texts)} texts, {len(validation_labels)} labels",
                                      "check the validation file"))
    if quantization == "static" and (not train_texts or calibration_samples < 1):
        raise ModelError(format_error("Static quantization needs calibration texts.",
                                      "train_texts and calibration_samples >= 1",
                                      f"{len(train_texts or [])} texts, calibration_samples={calibration_samples}",
                                      "pass --train_file (or use --quantization dynamic)"))
    if prune_heads_fraction > 0 and not (train_texts or validation_texts):
        raise ModelError(format_error("Head pruning needs texts to score head importance.",
                                      "train_texts (or validation_texts)", "none", "pass --train_file"))
    if recovery_epochs > 0 and not (train_texts and train_labels):
        raise ModelError(format_error("Recovery fine-tuning needs labelled training texts.",
                                      "train_texts and train_labels", "none", "pass --train_file with labels"))


def _claim_subfolders(output_dir: Path, names: list[str], overwrite: bool) -> None:
    """Refuse (before any work) if a folder this export would write is already non-empty."""
    taken = [n for n in names if (output_dir / n).is_dir() and any((output_dir / n).iterdir())]
    if (output_dir / EXPORT_REPORT_NAME).is_file():
        taken.append(EXPORT_REPORT_NAME)
    if taken and not overwrite:
        raise FileExistsError(format_error(
            f"{output_dir} already holds an export; refusing to overwrite it.",
            f"no existing {', '.join(names)} in the output folder", f"existing {', '.join(taken)}",
            "pass --overwrite (overwrite=True) or choose another --output_dir",
        ))


_STAGE_PREFIX = ".export-staging-"


@contextlib.contextmanager
def _staged_export(output: Path):
    """Yield a fresh stage folder inside `output`; on success swap its sub-folders and report into `output`.

    Leftover stages of killed exports are removed first. On an exception the stage is deleted and `output` keeps
    its previous export; the swap itself is a few renames, sub-folders first and the report last.
    """
    output.mkdir(parents=True, exist_ok=True)
    for leftover in output.glob(f"{_STAGE_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, dir=output))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    for name in (*_SUBFOLDERS, EXPORT_REPORT_NAME):
        old = output / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for name in _SUBFOLDERS:
        if (stage / name).exists():
            (stage / name).rename(output / name)
    (stage / EXPORT_REPORT_NAME).rename(output / EXPORT_REPORT_NAME)
    shutil.rmtree(stage)


def export_model(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    quantization: str = "dynamic",
    validation_texts: list[str] | None = None,
    validation_labels: list | None = None,
    train_texts: list[str] | None = None,
    train_labels: list | None = None,
    calibration_samples: int = 128,
    calibration_method: str = "minmax",
    calibration_percentile: float = 99.999,
    optimize: str | None = None,
    max_accuracy_drop: float = 1.0,
    prune_heads_fraction: float = 0.0,
    head_importance_samples: int = 512,
    magnitude_prune_amount: float = 0.0,
    low_rank_ratio: float | None = None,
    low_rank_energy: float | None = None,
    low_rank_targets: list[str] | None = None,
    recovery_epochs: float = 0.0,
    recovery_learning_rate: float = 3e-5,
    isa: str | None = None,
    per_channel: bool = True,
    max_length: int = 128,
    overwrite: bool = False,
    seed: int = 42,
) -> ExportResult:
    """Compress a sequence-classification model folder into a deployable ONNX artefact under `output_dir`.

    Labels may be names (mapped with the model's label2id) or ids. `train_texts` feed head importance, static
    calibration (a seeded sample of `calibration_samples`; head importance uses the first
    `head_importance_samples`) and the recovery fine-tune; `validation_*` feed the accuracy
    guard, which rejects the int8 model when its accuracy drops more than `max_accuracy_drop` points below the
    fp32 ONNX model (a warning, `guard_triggered=True`, and onnx/ becomes the deliverable).
    """
    _check_options(quantization, calibration_method, optimize, max_accuracy_drop, low_rank_ratio, low_rank_energy,
                   validation_texts, validation_labels, train_texts, train_labels, recovery_epochs,
                   calibration_samples, prune_heads_fraction)
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise FileExistsError(format_error("Output path is a file.", "a folder", str(output),
                                           "choose another --output_dir"))
    use_low_rank = low_rank_ratio is not None or low_rank_energy is not None
    torch_changes = prune_heads_fraction > 0 or magnitude_prune_amount > 0 or use_low_rank or recovery_epochs > 0
    planned = (["pytorch"] if torch_changes else []) + ["onnx"] + (["onnx_int8"] if quantization != "none" else [])
    _claim_subfolders(output, planned, overwrite)

    model, tokenizer = load_classifier(model_dir)  # raises the bad-folder errors before any heavy work
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    val_ids = encode_labels(validation_labels, label2id) if validation_labels else None
    train_ids = encode_labels(train_labels, label2id) if train_labels else None
    params = {"original": count_parameters(model)}
    compression: dict[str, Any] = {"source": str(model_dir)}
    result_parts: dict[str, Any] = {}

    if prune_heads_fraction > 0:
        # Importance is scored on training texts; validation texts only stand in when no training file is given.
        texts, ids = (train_texts, train_ids) if train_texts else (validation_texts, val_ids)
        report = prune_heads_by_importance(model, tokenizer, list(texts[:head_importance_samples]),
                                           ids[:head_importance_samples] if ids else None, prune_heads_fraction,
                                           max_length=max_length)
        result_parts["head_pruning"] = report.to_dict()
        compression["pruned_heads"] = f"{report.heads_before - report.heads_after}/{report.heads_before}"
    if use_low_rank:
        layers = apply_low_rank(model, ratio=low_rank_ratio, energy=low_rank_energy, target_modules=low_rank_targets)
        result_parts["low_rank"] = [r.to_dict() for r in layers]
        compression["low_rank"] = (f"ratio={low_rank_ratio}" if low_rank_ratio is not None
                                   else f"energy={low_rank_energy}")
        for r in layers:
            logger.info("low-rank %s: rank %d, relative error %.4f", r.name, r.rank, r.relative_error)
    if magnitude_prune_amount > 0:
        # Masks stay attached through the recovery fine-tune so the zeros cannot regrow.
        result_parts["magnitude_sparsity"] = magnitude_prune(model, magnitude_prune_amount, permanent=False)
        compression["magnitude_sparsity"] = magnitude_prune_amount
    if recovery_epochs > 0:
        recovery_finetune(model, tokenizer, train_texts, train_ids, num_train_epochs=recovery_epochs,
                          learning_rate=recovery_learning_rate, max_length=max_length, seed=seed)
        compression["recovery_epochs"] = recovery_epochs
    make_pruning_permanent(model)
    model = model.to("cpu").eval()
    params["compressed"] = count_parameters(model)

    # Everything is built in a hidden stage folder and swapped in only when complete: a killed or failed export
    # leaves the previous one (and the report that describes it) as it was.
    with _staged_export(output) as stage:
        def final(path: Path) -> str:  # where a staged folder will live once swapped in
            return str(output / Path(path).relative_to(stage))

        pytorch_dir = None
        if torch_changes:
            pytorch_dir = prepare_output_dir(stage / "pytorch", overwrite=overwrite, replace=True, flag="--overwrite")
            if use_low_rank:
                save_low_rank_model(model, tokenizer, pytorch_dir)
            else:
                model.save_pretrained(pytorch_dir)
                tokenizer.save_pretrained(pytorch_dir)
            write_compression_info(pytorch_dir, {**compression, "format": "pytorch", "precision": "fp32"})

        onnx_dir = export_onnx(model, tokenizer, stage / "onnx", overwrite=overwrite, compression=compression)
        sizes = {} if pytorch_dir is None else {"pytorch": size_on_disk_mb(pytorch_dir)}
        deliverable, kind, quantized_dir, guard, used_isa, ops = onnx_dir, "onnx", None, None, None, None
        quantize_optimization = None
        with tempfile.TemporaryDirectory(prefix="nlp_reuse_quant_src_") as tmp:
            if quantization != "none":
                used_isa = isa or detect_cpu_isa()
                source = onnx_dir
                if optimize is not None:
                    # ORT's quantizer cannot type the com.microsoft fused ops that O2/O3 create (Attention,
                    # SkipLayerNormalization), so int8 starts from an O1 graph; onnxruntime fuses the quantized graph
                    # again when the session loads.
                    source = optimize_onnx(onnx_dir, Path(tmp) / "o1", "O1")
                    quantize_optimization = "O1"
                target = stage / "onnx_int8"
                if quantization == "dynamic":
                    quantize_dynamic(source, target, isa=used_isa, per_channel=per_channel, overwrite=overwrite)
                else:
                    calibration = random.Random(seed).sample(list(train_texts),
                                                             min(calibration_samples, len(train_texts)))
                    quantize_static(source, target, calibration, method=calibration_method, isa=used_isa,
                                    percentile=calibration_percentile, max_length=max_length, per_channel=per_channel,
                                    overwrite=overwrite)
        if optimize is not None:
            optimize_onnx(onnx_dir, onnx_dir, optimize)
        parity_texts = (validation_texts or train_texts or _PARITY_FALLBACK)[:32]
        parity = check_onnx_parity(model, tokenizer, onnx_dir, parity_texts, max_length)
        # O3's GELU approximation moves logits by ~1e-3; anything far beyond that is a broken export.
        if parity > (1e-2 if optimize == "O3" else 1e-3):
            logger.warning("ONNX logits differ from PyTorch by up to %.3g on %d texts.", parity, len(parity_texts))
        sizes["onnx"] = size_on_disk_mb(onnx_dir)

        if quantization != "none":
            target = stage / "onnx_int8"
            ops = count_quantized_ops(target / "model.onnx")
            guard = accuracy_guard(onnx_dir, target, list(validation_texts), val_ids,
                                   max_accuracy_drop=max_accuracy_drop, max_length=max_length)
            sizes["onnx_int8"] = size_on_disk_mb(target)
            if guard.triggered:
                quantized_dir = stage / "onnx_int8_rejected"
                target.rename(quantized_dir)
            else:
                quantized_dir, deliverable, kind = target, target, "onnx_int8"

        result = ExportResult(
            output_dir=str(output), deliverable=final(deliverable), deliverable_kind=kind, onnx_dir=final(onnx_dir),
            quantized_dir=final(quantized_dir) if quantized_dir else None,
            pytorch_dir=final(pytorch_dir) if pytorch_dir else None, quantization=quantization, isa=used_isa,
            optimization=optimize, quantized_from_optimization=quantize_optimization, parity_max_abs_diff=parity,
            sizes_mb=sizes, params=params,
            guard=guard.to_dict() if guard else None, guard_triggered=bool(guard and guard.triggered),
            quantized_ops=ops, recovery_epochs=recovery_epochs,
            settings={"model_dir": str(model_dir), "calibration_method": calibration_method,
                      "calibration_samples": calibration_samples, "max_accuracy_drop": max_accuracy_drop,
                      "prune_heads_fraction": prune_heads_fraction, "head_importance_samples": head_importance_samples,
                      "magnitude_prune_amount": magnitude_prune_amount,
                      "low_rank_ratio": low_rank_ratio, "low_rank_energy": low_rank_energy,
                      "low_rank_targets": low_rank_targets, "per_channel": per_channel, "max_length": max_length,
                      "seed": seed},
            **result_parts,
        )
        (stage / EXPORT_REPORT_NAME).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


__all__ = ["EXPORT_REPORT_NAME", "ExportResult", "export_model"]
