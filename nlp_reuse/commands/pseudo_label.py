#!/usr/bin/env python
"""Self-training: label unlabeled texts with a fine-tuned classifier and keep the most confident of each predicted
class (class-balanced), for `finetune --extra_train_file`. OUTPUT.report.json says how many texts each label kept
and how confident they were.

Examples:
    nlp-reuse pseudo-label --model_name_or_path runs/movies --unlabeled_file tweets.txt \\
        --output_file runs/tweets_pseudo.jsonl --fraction 0.5
    nlp-reuse finetune --dataset_name builtin:sentiment_movies --extra_train_file runs/tweets_pseudo.jsonl \\
        --output_dir runs/movies_self_trained
        # source labels + the target texts the source model was surest of: one round of self-training
"""

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.pseudo_label import PseudoLabelArguments, run_pseudo_label


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_args(make_parser((PseudoLabelArguments,), __doc__), argv)
    report = run_pseudo_label(args, command=command_line("pseudo-label", argv))
    print(f"{report['num_kept']} of {report['num_texts']} texts labelled into {args.output_file} "
          f"(report: {args.output_file}.report.json)")
    return report


if __name__ == "__main__":
    main()
