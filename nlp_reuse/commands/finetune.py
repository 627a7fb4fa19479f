#!/usr/bin/env python
"""Fine-tune a pretrained encoder into a text classifier (usually the teacher for scripts/distill.py).

Examples:
    nlp-reuse finetune --dataset_name builtin:trec6 --output_dir runs/teacher
    nlp-reuse finetune --config configs/trec6_teacher.yaml --num_train_epochs 1
    nlp-reuse finetune --model_name_or_path bert-base-uncased --train_file train.csv \\
        --text_column sentence --label_column label --output_dir runs/my_teacher
    nlp-reuse finetune --dataset_name builtin:trec6 --strategy lora --lora_r 8 --learning_rate 1e-3 \\
        --output_dir runs/lora_teacher        # also: head_only, partial --unfreeze_top_k 2, ia3, features
    nlp-reuse finetune --tasks configs/multitask_tasks.yaml --output_dir runs/multitask   # one encoder, a head per task
"""

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.multitask import MultiTaskArguments, parse_multitask_args, run_multitask_finetune
from nlp_reuse.pipeline import release_distributed, run_finetune


def main(argv: list[str] | None = None) -> dict:
    multitask = parse_multitask_args((FinetuneArguments,), __doc__, argv)
    if multitask is not None:  # --tasks: the data flags are in the tasks file
        tasks_args, finetune_args = multitask
        report = run_multitask_finetune(tasks_args, finetune_args, command=command_line("finetune", argv))
    else:
        data_args, _, finetune_args = parse_args(
            make_parser((DataArguments, MultiTaskArguments, FinetuneArguments), __doc__), argv)
        report = run_finetune(data_args, finetune_args, command=command_line("finetune", argv))
    if report:
        print(f"Model folder and report.json written to {finetune_args.output_dir}")
    return report


if __name__ == "__main__":
    main()
    release_distributed()
