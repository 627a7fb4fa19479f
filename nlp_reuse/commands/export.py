"""Export a trained classifier folder to a deployable ONNX artefact (optionally pruned / low-rank, int8).

Examples:
    nlp-reuse export --model_dir runs/demo/distill/student --output_dir runs/demo/distill \\
        --dataset_name builtin:trec6 --quantization dynamic --optimize O2
    nlp-reuse export --model_dir M --output_dir out/static --train_file train.jsonl \\
        --validation_file validation.jsonl --quantization static --calibration_method entropy
    nlp-reuse export --model_dir M --output_dir out/pruned --dataset_name builtin:trec6 \\
        --prune_heads_fraction 0.25 --recovery_epochs 1 --low_rank_ratio 0.5

Writes OUTPUT_DIR/onnx/, OUTPUT_DIR/onnx_int8/ (if the accuracy guard passes, else onnx_int8_rejected/),
OUTPUT_DIR/pytorch/ (if pruned or factorized) and OUTPUT_DIR/export_report.json; the validation split feeds the
accuracy guard, the training split calibration, head importance and recovery. The work is done by
nlp_reuse.compress.export_model.
"""

import json
import sys

from nlp_reuse.cli import make_parser, parse_args
from nlp_reuse.compress.arguments import ExportArguments
from nlp_reuse.compress.artifacts import check_model_dir
from nlp_reuse.compress.labels import model_label_names, split_texts
from nlp_reuse.compress.pipeline import export_model
from nlp_reuse.config import DataArguments
from nlp_reuse.data import load_splits


def main(argv: list[str] | None = None) -> dict:
    data_args, args = parse_args(make_parser((DataArguments, ExportArguments), __doc__), argv)
    check_model_dir(args.model_dir)  # a bad folder fails before the data is read
    splits, _ = load_splits(data_args, label_names=model_label_names(args.model_dir))
    train_texts, train_labels = split_texts(splits, "train")
    val_texts, val_labels = split_texts(splits, "validation")
    result = export_model(
        args.model_dir, args.output_dir, quantization=args.quantization, validation_texts=val_texts,
        validation_labels=val_labels, train_texts=train_texts, train_labels=train_labels,
        calibration_samples=args.calibration_samples, calibration_method=args.calibration_method,
        calibration_percentile=args.calibration_percentile, optimize=args.optimize,
        max_accuracy_drop=args.max_accuracy_drop, prune_heads_fraction=args.prune_heads_fraction,
        head_importance_samples=args.head_importance_samples, magnitude_prune_amount=args.magnitude_prune_amount,
        low_rank_ratio=args.low_rank_ratio, low_rank_energy=args.low_rank_energy,
        low_rank_targets=args.low_rank_targets, recovery_epochs=args.recovery_epochs,
        recovery_learning_rate=args.recovery_learning_rate, isa=args.isa, max_length=data_args.max_length,
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
    print(f"Export report written to {result.output_dir}/export_report.json")
    return result.to_dict()


if __name__ == "__main__":
    main()
