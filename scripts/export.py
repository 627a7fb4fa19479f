"""Export a trained classifier folder to a deployable ONNX artefact (optionally pruned / low-rank, int8).

    python scripts/export.py --model_dir runs/demo/distill/student --output_dir runs/demo/distill \
        --quantization dynamic --validation_file data/validation.jsonl --optimize O2

Writes OUTPUT_DIR/onnx/, OUTPUT_DIR/onnx_int8/ (if the accuracy guard passes), OUTPUT_DIR/pytorch/ (if pruned or
factorized) and OUTPUT_DIR/export_report.json. The work is done by nlp_reuse.compress.export_model.
"""

from __future__ import annotations

import json
import sys

from transformers import HfArgumentParser

from nlp_reuse.compress.arguments import ExportArguments
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.compress.texts import load_labelled_texts


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(ExportArguments)


def _load(path: str | None, args: ExportArguments) -> tuple[list[str] | None, list | None]:
    # Swap point for nlp_reuse.data once it provides the project's loader (builtin:trec6, hub names, ...).
    if path is None:
        return None, None
    return load_labelled_texts(path, args.text_column, args.label_column)


def main(argv: list[str] | None = None) -> dict:
    (args,) = make_parser().parse_args_into_dataclasses(args=argv)
    train_texts, train_labels = _load(args.train_file, args)
    val_texts, val_labels = _load(args.validation_file, args)
    result = export_model(
        args.model_dir, args.output_dir, quantization=args.quantization, validation_texts=val_texts,
        validation_labels=val_labels, train_texts=train_texts, train_labels=train_labels,
        calibration_samples=args.calibration_samples, calibration_method=args.calibration_method,
        calibration_percentile=args.calibration_percentile, optimize=args.optimize,
        max_accuracy_drop=args.max_accuracy_drop, prune_heads_fraction=args.prune_heads_fraction,
        head_importance_samples=args.head_importance_samples, magnitude_prune_amount=args.magnitude_prune_amount,
        low_rank_ratio=args.low_rank_ratio, low_rank_energy=args.low_rank_energy,
        low_rank_targets=args.low_rank_targets, recovery_epochs=args.recovery_epochs,
        recovery_learning_rate=args.recovery_learning_rate, isa=args.isa, max_length=args.max_length,
        overwrite=args.overwrite, seed=args.seed,
    )
    if result.guard_triggered:
        g = result.guard
        print("=" * 78, file=sys.stderr)
        print(f"ACCURACY GUARD TRIGGERED: int8 accuracy {g['quantized_accuracy']:.4f} vs fp32 "
              f"{g['fp32_accuracy']:.4f} ({g['drop_points']:.2f} points > {g['max_accuracy_drop']}).\n"
              f"The int8 model was moved to {result.quantized_dir}; the deliverable is the fp32 ONNX model.",
              file=sys.stderr)
        print("=" * 78, file=sys.stderr)
    print(json.dumps({"deliverable": result.deliverable, "sizes_mb": result.sizes_mb,
                      "parity_max_abs_diff": result.parity_max_abs_diff, "guard": result.guard}, indent=2))
    print(f"export report: {result.output_dir}/export_report.json")
    return result.to_dict()


if __name__ == "__main__":
    main()
