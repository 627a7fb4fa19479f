"""The `nlp-reuse` console command: one subcommand per pipeline step, each a module with `main(argv)`.

    nlp-reuse finetune --config configs/trec6_teacher.yaml --output_dir runs/teacher
    nlp-reuse distill --teacher_model_name_or_path runs/teacher --dataset_name builtin:trec6 --output_dir runs/d
    accelerate launch -m nlp_reuse.commands.distill --config x.yaml ...     # multi-process, no source tree needed

`scripts/<name>.py` in a checkout forwards to the same modules.
"""

from __future__ import annotations

import importlib
import sys

from nlp_reuse.errors import USER_ERRORS

# Subcommand -> (module under nlp_reuse.commands, one-line summary for `nlp-reuse --help`).
COMMANDS = {
    "finetune": ("finetune", "fine-tune a pretrained encoder into a classifier (the teacher)"),
    "distill": ("distill", "distill a fine-tuned teacher into a smaller student"),
    "export": ("export", "ONNX export, int8 quantization, pruning, low-rank, behind an accuracy guard"),
    "benchmark": ("benchmark", "accuracy, size and CPU latency of model and ONNX folders"),
    "push": ("push", "push a run to the Hugging Face Hub with its model card (or --dry_run)"),
    "compare-strategies": ("compare_strategies", "compare transfer-learning strategies on one budget"),
    "benchmark-distill": ("benchmark_distill", "distillation over several seeds, mean and spread"),
    "compress": ("compress", "prune by KD importance, distill-recover, QAT, int8 and OpenVINO, all measured"),
    "frontier": ("frontier", "students 10x-100x faster: train, export and time them all, pick under a budget"),
    "adapt": ("adapt", "continued masked-LM pretraining on unlabeled in-domain texts (domain adaptation)"),
    "pseudo-label": ("pseudo_label", "label unlabeled texts with a classifier, keep the confident (self-training)"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return ("usage: nlp-reuse <command> [--config x.yaml] [flags]\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`nlp-reuse <command> --help` lists the command's flags.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nlp-reuse` console script; returns the exit status (the console wrapper exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise SystemExit(f"nlp-reuse: unknown command {name!r}; expected one of {', '.join(COMMANDS)}.\n\n{_usage()}")
    module = importlib.import_module(f"nlp_reuse.commands.{COMMANDS[name][0]}")
    try:
        module.main(rest)  # prints where its results went; the return value is for library callers
        return 0
    except USER_ERRORS as err:  # bad input or flags: the message says what to fix; bugs keep their traceback
        print(f"nlp-reuse {name}: error: {err}", file=sys.stderr)
        return 2
    finally:
        from nlp_reuse.pipeline import release_distributed

        release_distributed()


__all__ = ["COMMANDS", "main"]
