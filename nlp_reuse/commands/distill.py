#!/usr/bin/env python
"""Distill a fine-tuned teacher classifier into a smaller student, and report what was gained and lost.

Examples:
    nlp-reuse distill --config configs/trec6_distill.yaml --teacher_model_name_or_path runs/teacher
    accelerate launch -m nlp_reuse.commands.distill --config configs/trec6_distill.yaml --teacher_model_name_or_path T
    accelerate launch scripts/distill.py --config configs/trec6_distill.yaml --teacher_model_name_or_path T   # checkout
    nlp-reuse distill --dataset_name builtin:sms_spam --teacher_model_name_or_path T \\
        --student_num_layers 3 --temperature 2 --alpha 0.5 --run_baseline true --output_dir runs/sms
    nlp-reuse distill --config configs/trec6_distill.yaml --teacher_model_name_or_path T \\
        --strategy lora --learning_rate 1e-3 --teacher_cache runs/cache --export onnx_int8 --output_dir runs/d

Writes OUTPUT_DIR/student/ (a standard model folder), OUTPUT_DIR/baseline/ (with --run_baseline true) and
OUTPUT_DIR/report.json (teacher vs student vs baseline: accuracy, macro-F1, params, size, CPU latency).
"""

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments
from nlp_reuse.pipeline import release_distributed, run_distillation


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser((DataArguments, DistillScriptArguments, DistillationArguments), __doc__)
    data_args, script_args, distill_args = parse_args(parser, argv)
    report = run_distillation(data_args, script_args, distill_args, command=command_line("distill", argv))
    if report:
        print(f"Student, report.json and run_args.json written to {distill_args.output_dir}")
    return report


if __name__ == "__main__":
    main()
    release_distributed()
