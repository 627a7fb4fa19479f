#!/usr/bin/env python
"""Compare transfer-learning strategies on one dataset with the same budget, in one table.

Takes every flag of scripts/finetune.py (or --config), plus --strategies and --strategy_learning_rates. Each
strategy is one fine-tuning run (nlp_reuse.pipeline.run_finetune) written to OUTPUT_DIR/<strategy>/; the table
(trainable params, train time, peak memory, test accuracy and macro-F1, latency) is printed and written to
OUTPUT_DIR/strategies.json and OUTPUT_DIR/strategies.md. Flags that only some strategies use (--unfreeze_top_k,
--gradual_unfreeze_every, --layerwise_lr_decay, --lora_*) reach only those.

Example:
    nlp-reuse compare-strategies --model_name_or_path builtin:minilm --dataset_name builtin:trec6 \\
        --strategies full,head_only,partial,lora,features --unfreeze_top_k 2 --lora_r 8 --learning_rate 1e-4 \\
        --strategy_learning_rates head_only=1e-3,partial=2e-4,lora=5e-4 --output_dir runs/strategies_trec6
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.config import DataArguments, FinetuneArguments
from nlp_reuse.files import prepare_output_dir, write_json
from nlp_reuse.pipeline import release_distributed, run_finetune
from nlp_reuse.strategies import format_strategy_table, strategy_row
from nlp_reuse.strategy_config import STRATEGIES


@dataclass
class CompareArguments:
    strategies: str = field(
        default="full,head_only,partial,lora,features",
        metadata={"help": f"Comma-separated strategies to run, in table order; any of {', '.join(STRATEGIES)}."},
    )
    strategy_learning_rates: str | None = field(
        default=None,
        metadata={"help": "Per-strategy learning rates that replace --learning_rate, e.g. head_only=1e-3,lora=5e-4 "
                          "(frozen encoders and adapters usually want a larger rate than full fine-tuning)."},
    )

    def __post_init__(self):
        self.strategy_list = [s.strip() for s in self.strategies.split(",") if s.strip()]
        unknown = [s for s in self.strategy_list if s not in STRATEGIES]
        if unknown or not self.strategy_list or len(set(self.strategy_list)) != len(self.strategy_list):
            raise ValueError(f"--strategies must list distinct strategies from {', '.join(STRATEGIES)}, got "
                             f"{self.strategies!r}.")
        self.learning_rates = {}
        for item in (self.strategy_learning_rates or "").split(","):
            if not item.strip():
                continue
            name, _, value = item.partition("=")
            try:
                rate = float(value)
            except ValueError:
                rate = -1.0
            # Rates for strategies not run this time are allowed: one config can serve a sweep and a single rerun.
            if name.strip() not in STRATEGIES or rate <= 0:
                raise ValueError(
                    f"--strategy_learning_rates entries must look like STRATEGY=RATE with a strategy from "
                    f"{', '.join(STRATEGIES)} and a rate > 0; got {item!r}."
                )
            self.learning_rates[name.strip()] = rate


def run_args_for(args: FinetuneArguments, strategy: str, output_dir: Path, learning_rate: float | None):
    """`args` for one strategy: its own folder and rate, and only the strategy options it uses."""
    run_args = copy.copy(args)
    run_args.strategy, run_args.output_dir = strategy, str(output_dir)
    if learning_rate is not None:
        run_args.learning_rate = learning_rate
    if strategy != "partial":
        run_args.gradual_unfreeze_every = None
    if strategy in ("head_only", "features"):
        run_args.layerwise_lr_decay = 1.0
    return run_args


def main(argv: list[str] | None = None) -> list[dict]:
    parser = make_parser((DataArguments, FinetuneArguments, CompareArguments), __doc__)
    data_args, finetune_args, compare_args = parse_args(parser, argv)
    root = prepare_output_dir(finetune_args.output_dir, overwrite=finetune_args.overwrite_output_dir)
    command = command_line("compare-strategies", argv)
    rows = []
    for strategy in compare_args.strategy_list:
        run_args = run_args_for(finetune_args, strategy, root / strategy, compare_args.learning_rates.get(strategy))
        report = run_finetune(data_args, run_args, command=command)
        if report:  # empty on non-main processes
            rows.append(strategy_row(report))
    if not rows:
        return rows
    table = format_strategy_table(rows)
    write_json(root / "strategies.json", {"dataset": data_args.dataset_name or data_args.train_file,
                                          "model": finetune_args.model_name_or_path, "rows": rows,
                                          "command": command})
    (root / "strategies.md").write_text(format_strategy_table(rows, markdown=True) + "\n")
    print(table)
    print(f"Per-strategy runs, strategies.json and strategies.md written to {root}")
    return rows


if __name__ == "__main__":
    main()
    release_distributed()
