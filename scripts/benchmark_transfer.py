#!/usr/bin/env python
"""Transfer across domains, tasks and teachers, over seeds (mean ± sd of test accuracy, paired differences).

    cross_domain   fine-tune MiniLM on movie-review snippets (builtin:sentiment_movies), test on held-out halves of
                   tweets, Amazon and NYT sentences: source only, continued MLM pretraining on the targets' other
                   (unlabeled) halves, alignment (CORAL / MMD / adversarial) with them, and both
    multitask      TREC-6 + SMS spam + movie reviews in one encoder with three heads vs three single-task models;
                   the multi-task teacher distilled into a 3-layer multi-task student (retention per task)
    multi_teacher  three MiniLM teachers (seeds 1-3, or with --teachers strategies three fine-tuning recipes) into
                   one 3-layer student vs the student of the best teacher

Every training is an `nlp-reuse` command in its own process, one after the other; finished runs (report.json) are
reused, so a stopped benchmark resumes. The harness is benchmarks/transfer.py (a folder of the checkout).

Examples:
    python scripts/benchmark_transfer.py --experiment cross_domain --output_dir runs/transfer --seeds 1,2,3
    python scripts/benchmark_transfer.py --experiment multitask --output_dir runs/transfer --seeds 1,2,3
    python scripts/benchmark_transfer.py --experiment multi_teacher --output_dir runs/transfer --seeds 1,2,3
    python scripts/benchmark_transfer.py --experiment cross_domain --output_dir runs/transfer --seeds 1,2,3 \\
        --methods source,coral@10000,self_train+coral@10000 --pseudo_label_from coral@10000 --pseudo_label_balance equal
"""

import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from nlp_reuse.cli import HelpFormatter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's benchmarks/ folder
from benchmarks.transfer import TEACHER_SETS, Budget, cross_domain, multi_teacher, multitask  # noqa: E402
from nlp_reuse.files import write_json  # noqa: E402

EXPERIMENTS = ("cross_domain", "multitask", "multi_teacher")


@dataclass
class Arguments:
    experiment: str = field(metadata={"help": f"Which comparison: {' | '.join(EXPERIMENTS)}."})
    output_dir: str = field(metadata={"help": "Folder of every run, the data splits and the results."})
    seeds: str = field(default="1,2,3", metadata={"help": "Comma-separated training seeds."})
    max_train_samples: int = field(default=2000, metadata={"help": "Training examples per task (seeded sample)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs of every fine-tuning."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of every fine-tuning."})
    max_length: int = field(default=64, metadata={"help": "Tokens per text."})
    methods: str = field(
        default="source,dapt,mmd@0.1,dapt+mmd@0.1",
        metadata={"help": "cross_domain, comma-separated, the first is the reference: source | dapt | coral | mmd | "
                          "adversarial | dapt+LOSS | self_train (one round of self-training from the source "
                          "model's confident labels of the target texts) | self_train+LOSS; LOSS@W sets that loss's "
                          "--domain_loss_weight; METHOD:per_domain "
                          "trains one model per target domain, adapted/aligned to that domain alone. Choose W by the "
                          "source validation accuracy, never by target labels: mmd@1 collapsed to one class (source "
                          "validation 50.3%% against 82.7%% without alignment); CORAL divides by 4 d^2 (~1e-8 on "
                          "MiniLM's pooled features at the start) and needs a weight near 1e4."})
    domain_loss_weight: float = field(default=1.0, metadata={"help": "cross_domain: --domain_loss_weight."})
    in_domain_ceiling: bool = field(
        default=False, metadata={"help": "cross_domain: also fine-tune on each target's other half with its labels "
                                         "(the ceiling the methods approach; they only read those texts unlabeled)."})
    adapt_epochs: float = field(default=3.0, metadata={"help": "cross_domain: epochs of continued pretraining."})
    adapt_head_warmup_steps: int = field(
        default=0, metadata={"help": "cross_domain: adapt --head_warmup_steps (MiniLM's MLM head is new); its runs go "
                                     "to folders suffixed _headN."})
    pseudo_label_fraction: float = field(
        default=0.5, metadata={"help": "cross_domain, self_train: the fraction of each predicted class kept (its most "
                                       "confident texts); fixed beforehand, as no target label may choose it."})
    pseudo_label_from: str = field(
        default="source", metadata={"help": "cross_domain, self_train: the method whose model (same seed) labels the "
                                            "target texts; list it before the self_train methods in --methods."})
    pseudo_label_balance: str = field(
        default="proportional", metadata={"help": "cross_domain, self_train: pseudo-label --balance (proportional | "
                                                  "equal); equal runs go to folders suffixed _equal."})
    adapt_learning_rate: float = field(
        default=1e-4, metadata={"help": "cross_domain: peak learning rate of continued pretraining."})
    task: str = field(default="trec6", metadata={"help": "multi_teacher: the builtin task."})
    teachers: str = field(
        default="seeds", metadata={"help": "multi_teacher: what the three teachers differ by: seeds (full fine-tuning "
                                           "with seeds 1-3) | strategies (full fine-tuning at --learning_rate seed 1, "
                                           "layer-wise LR decay 0.8 at 2e-4 seed 2, LoRA r=16 alpha 32 at 1e-3 seed "
                                           "3: these two recipes set their own learning rates; teachers in "
                                           "single/TASK/RECIPE_seedN, students in folders suffixed _strategies)."})
    student_layers: int = field(default=3, metadata={"help": "multitask / multi_teacher: student depth."})
    student_epochs: float = field(default=3.0, metadata={"help": "multitask / multi_teacher: student epochs."})
    temperature: float = field(default=2.0, metadata={"help": "Distillation temperature."})
    alpha: float = field(default=0.5, metadata={"help": "Weight of the soft-target loss."})

    def __post_init__(self):
        if self.experiment not in EXPERIMENTS:
            raise ValueError(f"--experiment must be one of {', '.join(EXPERIMENTS)}, got {self.experiment!r}.")
        if self.teachers not in TEACHER_SETS:
            raise ValueError(f"--teachers must be one of {', '.join(TEACHER_SETS)}, got {self.teachers!r}.")


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser(Arguments, description=__doc__, formatter_class=HelpFormatter)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    out, seeds = Path(args.output_dir), [int(s) for s in args.seeds.split(",")]
    budget = Budget(max_train_samples=args.max_train_samples, num_train_epochs=args.num_train_epochs,
                    learning_rate=args.learning_rate, max_length=args.max_length)
    if args.experiment == "cross_domain":
        text, results = cross_domain(out / "cross_domain", seeds, budget, args.methods.split(","),
                                     args.domain_loss_weight, args.adapt_epochs, args.adapt_learning_rate,
                                     args.in_domain_ceiling, args.adapt_head_warmup_steps,
                                     args.pseudo_label_fraction, args.pseudo_label_from,
                                     args.pseudo_label_balance)
    elif args.experiment == "multitask":
        text, results = multitask(out, seeds, budget, args.student_layers, args.student_epochs, args.temperature,
                                  args.alpha)
    else:
        text, results = multi_teacher(out, seeds, budget, args.task, args.student_layers, args.temperature,
                                      args.alpha, args.student_epochs, args.teachers)
    print(text)
    name = (f"multi_teacher_{args.task}" + ("" if args.teachers == "seeds" else f"_{args.teachers}")
            if args.experiment == "multi_teacher" else args.experiment)
    (out / f"{name}.md").write_text(text + "\n")
    write_json(out / f"{name}.json", {"arguments": vars(args), "results": results})
    print(f"Table and results written to {out}/{name}.md and .json")


if __name__ == "__main__":
    main()
