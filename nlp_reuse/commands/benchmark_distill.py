#!/usr/bin/env python
"""Distillation over several seeds: teacher vs KD student vs no-KD baseline, mean and spread.

Takes every flag of scripts/distill.py (or --config), plus --seeds. Each seed is a full distill run (with the
baseline) written to OUTPUT_DIR/seed{N}/; the table and OUTPUT_DIR/seeds_summary.json hold the comparison.

Example:
    nlp-reuse benchmark-distill --config configs/trec6_distill.yaml \\
        --teacher_model_name_or_path runs/demo/teacher --output_dir runs/seeds --seeds 1,2,3
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments
from nlp_reuse.errors import ConfigError
from nlp_reuse.evaluation import format_seed_table, summarize_seeds
from nlp_reuse.files import prepare_output_dir, write_json
from nlp_reuse.pipeline import release_distributed, run_distillation
from nlp_reuse.student_config import StudentFamilyArguments, TransferSetArguments


@dataclass
class SeedArguments:
    seeds: str = field(default="1,2,3", metadata={"help": "Comma-separated training seeds, one full run each."})

    def __post_init__(self):
        try:
            self.seed_list = [int(s) for s in self.seeds.split(",")]
        except ValueError as err:
            raise ConfigError(f"--seeds must be comma-separated integers such as 1,2,3, got {self.seeds!r}.") from err


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser((DataArguments, DistillScriptArguments, StudentFamilyArguments, TransferSetArguments,
                          DistillationArguments, SeedArguments), __doc__)
    data_args, script_args, family_args, transfer_args, distill_args, seed_args = parse_args(parser, argv)
    script_args.run_baseline = True  # the benchmark compares KD with no KD, seed by seed
    root = prepare_output_dir(distill_args.output_dir, overwrite=distill_args.overwrite_output_dir)
    reports = {}
    for seed in seed_args.seed_list:
        run_args = copy.copy(distill_args)
        run_args.seed, run_args.output_dir = seed, str(root / f"seed{seed}")
        reports[seed] = run_distillation(data_args, script_args, run_args,
                                         command=command_line("benchmark-distill", argv), family=family_args,
                                         transfer=transfer_args)
    summary = summarize_seeds(reports)
    table = format_seed_table(reports, summary)
    write_json(Path(root) / "seeds_summary.json", {**summary, "command": command_line("benchmark-distill", argv)})
    (Path(root) / "seeds_summary.md").write_text(table + "\n")
    print(table)
    print(f"Per-seed runs and seeds_summary.json written to {root}")
    return summary


if __name__ == "__main__":
    main()
    release_distributed()
