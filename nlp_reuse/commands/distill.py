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
    nlp-reuse distill --dataset_name builtin:trec6 --teacher_model_name_or_path T --student_type bilstm \\
        --student_embedding_dim 128 --student_hidden_size 128 --augment masking,ngram --augment_factor 10 \\
        --kd_loss mse --alpha 1 --learning_rate 2e-3 --trim_vocabulary true --teacher_cache runs/cache \\
        --run_baseline true --export onnx_int8 --output_dir runs/bilstm
    nlp-reuse distill --tasks configs/multitask_tasks.yaml --teacher_model_name_or_path runs/multitask \\
        --student_num_layers 3 --export onnx_int8 --output_dir runs/multitask_l3   # a finetune --tasks teacher;
                                                                   # each task's student to exports/NAME/

Writes OUTPUT_DIR/student/ (a standard model folder), OUTPUT_DIR/baseline/ (with --run_baseline true) and
OUTPUT_DIR/report.json (teacher vs student vs baseline: accuracy, macro-F1, params, size, CPU latency).
"""

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments
from nlp_reuse.multitask import MultiTaskArguments, parse_multitask_args, run_multitask_distillation
from nlp_reuse.pipeline import release_distributed, run_distillation
from nlp_reuse.student_config import StudentFamilyArguments, TransferSetArguments


def make_distill_parser():
    """The flags of `nlp-reuse distill` (also read by the frontier to check its plans)."""
    return make_parser((DataArguments, DistillScriptArguments, StudentFamilyArguments, TransferSetArguments,
                        DistillationArguments), __doc__)


def main(argv: list[str] | None = None) -> dict:
    multitask = parse_multitask_args((DistillScriptArguments, StudentFamilyArguments, TransferSetArguments,
                                      DistillationArguments), __doc__, argv)
    if multitask is not None:  # --tasks: a multi-task teacher and student; the data flags are in the tasks file
        tasks_args, script_args, family_args, transfer_args, distill_args = multitask
        report = run_multitask_distillation(tasks_args, script_args, distill_args,
                                            command=command_line("distill", argv), family=family_args,
                                            transfer=transfer_args)
    else:
        # --tasks is listed in --help; given, it takes the branch above.
        parser = make_parser((*make_distill_parser().dataclass_types, MultiTaskArguments), __doc__)
        data_args, script_args, family_args, transfer_args, distill_args, _ = parse_args(parser, argv)
        report = run_distillation(data_args, script_args, distill_args, command=command_line("distill", argv),
                                  family=family_args, transfer=transfer_args)
    if report:
        print(f"Student, report.json and run_args.json written to {distill_args.output_dir}")
    return report


if __name__ == "__main__":
    main()
    release_distributed()
