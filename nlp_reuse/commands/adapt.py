#!/usr/bin/env python
"""Domain-adaptive continued pretraining: masked-language modelling on unlabeled in-domain texts before fine-tuning
(Gururangan et al. 2020, "Don't Stop Pretraining"). The adapted folder is a --model_name_or_path for finetune and a
--student_model_name_or_path for distill; report.json holds the masked-token loss before and after, on held-out
texts and fixed masks.

Examples:
    nlp-reuse adapt --unlabeled_file tweets.txt --output_dir runs/minilm_tweets
    nlp-reuse adapt --dataset_name builtin:sentiment_tweets --num_train_epochs 3 --output_dir runs/minilm_tweets
        # texts of the train split only: the test texts finetune will carve never reach adaptation
    nlp-reuse adapt --model_name_or_path bert-base-uncased --unlabeled_file a.txt b.csv --text_column body \\
        --max_unlabeled_samples 50000 --output_dir runs/bert_domain
    nlp-reuse finetune --model_name_or_path runs/minilm_tweets --dataset_name builtin:sentiment_tweets \\
        --output_dir runs/teacher_tweets
"""

from nlp_reuse.adapt import AdaptArguments, run_adapt
from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.pipeline import release_distributed


def main(argv: list[str] | None = None) -> dict:
    (adapt_args,) = parse_args(make_parser((AdaptArguments,), __doc__), argv)
    report = run_adapt(adapt_args, command=command_line("adapt", argv))
    if report:
        print(f"Adapted model folder and report.json written to {adapt_args.output_dir}")
    return report


if __name__ == "__main__":
    main()
    release_distributed()
