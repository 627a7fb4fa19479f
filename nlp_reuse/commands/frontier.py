#!/usr/bin/env python
"""The speed frontier: distill a list of students (BiLSTM, static embeddings, smaller transformers; each with its
no-KD baseline) over several seeds, export each to ONNX (int8 behind the accuracy guard), and time them all beside
the fp32 PyTorch teacher in one process. Prints which student to ship under a latency budget.

Example:
    nlp-reuse frontier --plan configs/trec6_frontier.yaml --teacher_model_name_or_path runs/teacher \\
        --seeds 1,2,3 --latency_budget_ms 1 --output_dir runs/frontier_trec6

The plan (--plan) holds `nlp-reuse distill` flags shared by every student and a `students:` mapping of name ->
that student's own flags. Writes OUTPUT_DIR/runs/NAME/seedS/ (one distill run each; a run that finished with the
same flags is kept, so a stopped frontier goes on where it stopped), OUTPUT_DIR/cache/ (teacher logits, shared) and
frontier.json, frontier.md and frontier.png (accuracy vs latency, log scale, Pareto front marked).
"""

from dataclasses import dataclass, field
from pathlib import Path

from nlp_reuse.cli import command_line, make_parser, parse_args
from nlp_reuse.commands.benchmark_distill import SeedArguments
from nlp_reuse.commands.distill import make_distill_parser
from nlp_reuse.compress.benchmark import environment_info, set_num_threads
from nlp_reuse.compress.labels import split_texts
from nlp_reuse.data import load_splits
from nlp_reuse.errors import ConfigError
from nlp_reuse.frontier import (
    ablation,
    frontier_table,
    measure_frontier,
    read_plan,
    run_plan,
    within_budget,
    write_frontier,
)
from nlp_reuse.frontier.plan import run_flags, to_argv
from nlp_reuse.frontier.tables import ablation_table
from nlp_reuse.modeling import resolve_model_path
from nlp_reuse.report import RunReport


@dataclass
class FrontierArguments(SeedArguments):
    """What the frontier runs and how it times; the students and their shared flags are in the plan (--plan)."""

    plan: str | None = field(
        default=None, metadata={"help": "The plan: YAML of shared distill flags + a `students:` mapping."}
    )
    output_dir: str | None = field(default=None, metadata={"help": "Folder of the runs and the frontier files."})
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "The fine-tuned teacher (overrides the plan's)."}
    )
    only: str | None = field(default=None, metadata={"help": "Comma-separated student names: run and time these."})
    latency_budget_ms: float | None = field(
        default=None, metadata={"help": "Name the most accurate model whose batch-1 p50 latency is within X ms."}
    )
    num_threads: int = field(default=2, metadata={"help": "CPU threads for every timed model (torch and ORT)."})
    latency_calls: int = field(default=200, metadata={"help": "Batch-1 calls timed per model folder."})
    throughput_calls: int = field(default=10, metadata={"help": "Batch-32 calls timed per model folder."})
    redo: bool = field(default=False, metadata={"help": "Train runs again even when their report.json exists."})

    def __post_init__(self):
        if self.plan is None or self.output_dir is None:
            raise ConfigError("--plan (e.g. configs/trec6_frontier.yaml) and --output_dir are required.")
        super().__post_init__()
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise ConfigError(f"--latency_budget_ms must be > 0, got {self.latency_budget_ms}.")


def run(args: FrontierArguments, command: str) -> dict:
    plan = read_plan(args.plan, teacher=args.teacher_model_name_or_path)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",")]
        unknown = sorted(set(wanted) - set(plan.students))
        if unknown:
            raise ConfigError(f"--only names {unknown}, not in the plan's students {sorted(plan.students)}.")
        plan.students = {n: plan.students[n] for n in wanted}
    root = Path(args.output_dir)
    runs = run_plan(plan, args.seed_list, root, redo=args.redo)

    # One test split for every row: the data flags are shared (read_plan refuses them per student).
    first = next(iter(plan.students))
    data_args = parse_args(make_distill_parser(), to_argv(run_flags(plan, first, args.seed_list[0], root, root)))[0]
    teacher = plan.common.get("teacher_model_name_or_path")
    reports = {name: {s: RunReport.read(folder / "report.json") for s, folder in seeds.items()}
               for name, seeds in runs.items()}
    labels = next(iter(next(iter(reports.values())).values())).task.labels
    splits, _ = load_splits(data_args, label_names=labels)
    texts, gold = split_texts(splits, "test")
    threads = set_num_threads(args.num_threads)
    print(f"Timing {1 + sum(len(s) for s in runs.values())} runs' folders on {threads} threads, {len(texts)} texts")
    teacher_row, rows = measure_frontier(
        resolve_model_path(teacher), runs, texts, gold, num_threads=args.num_threads,
        max_length=data_args.max_length, latency_calls=args.latency_calls, throughput_calls=args.throughput_calls)
    entries = ablation(reports)
    extra = {"plan": plan.source, "teacher_model": teacher, "data": data_args.dataset_name or data_args.train_file,
             "seeds": args.seed_list, "command": command, "environment": environment_info(args.num_threads)}
    if args.latency_budget_ms is not None:
        pick = within_budget([teacher_row, *rows], args.latency_budget_ms)
        extra["latency_budget"] = {"ms": args.latency_budget_ms, "pick": pick.name if pick else None,
                                   "row": pick.to_dict() if pick else None}
    paths = write_frontier(root, teacher_row, rows, entries, extra)
    print(frontier_table(teacher_row, rows, markdown=False))
    print()
    print(ablation_table(entries, markdown=False))
    if args.latency_budget_ms is not None:
        pick = extra["latency_budget"]["pick"]
        print(f"\nMost accurate within {args.latency_budget_ms:g} ms: {pick or 'none (nothing is that fast)'}")
    print("Written: " + ", ".join(str(p) for p in paths.values()))
    return {"teacher": teacher_row.to_dict(), "rows": [r.to_dict() for r in rows], "ablation": entries, **extra}


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_args(make_parser((FrontierArguments,), __doc__), argv)
    return run(args, command_line("frontier", argv))


if __name__ == "__main__":
    main()
