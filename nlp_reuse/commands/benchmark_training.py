#!/usr/bin/env python
"""Training throughput, side by side in one run: hand-written torch loops, a naive Trainer subclass, and
nlp_reuse's DistillationTrainer (live teacher, cached teacher logits, torch.compile).

Random-weight BERT pairs (minilm: 6 -> 3 layers, hidden 384; bert-base: 12 -> 6 layers, hidden 768) on synthetic
fixed-length data. Each variant runs in a fresh process, one after the other. CPU by default; GPU when present.

Examples:
    nlp-reuse benchmark-training --shape minilm --seq_len 64 --batch_size 32
    nlp-reuse benchmark-training --shape bert-base --seq_len 128 --batch_size 256 --precision bf16  # GPU
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from nlp_reuse.training_benchmark import SHAPES, VARIANTS, BenchSpec, add_ratios, format_results, run_benchmark


@dataclass
class Arguments:
    shape: str = field(default="minilm", metadata={"help": f"Model pair shape: {' | '.join(SHAPES)}."})
    seq_len: int = field(default=64, metadata={"help": "Tokens per example."})
    batch_size: int = field(default=32, metadata={"help": "Examples per step."})
    steps: int = field(default=20, metadata={"help": "Timed steps per variant (after the warm-up)."})
    warmup: int = field(default=3, metadata={"help": "Untimed warm-up steps (compilation happens here)."})
    precision: str = field(default="fp32", metadata={"help": "fp32 | bf16 (autocast; bf16 teacher weights)."})
    variants: str = field(default=",".join(VARIANTS), metadata={"help": "Comma-separated variants to run."})
    compile_backend: str = field(default="inductor", metadata={"help": "torch.compile backend of the compiled variant."})
    output_json: str = field(default=None, metadata={"help": "Also write the results here as JSON."})

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"--shape must be one of {sorted(SHAPES)}, got {self.shape!r}.")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {self.precision!r}.")
        unknown = set(self.variants.split(",")) - set(VARIANTS)
        if unknown:
            raise ValueError(f"Unknown variants {sorted(unknown)}: expected some of {list(VARIANTS)}.")


def main(argv: list[str] | None = None) -> list[dict]:
    (args,) = HfArgumentParser(Arguments, description=__doc__).parse_args_into_dataclasses(args=argv)
    spec = BenchSpec(shape=args.shape, seq_len=args.seq_len, batch_size=args.batch_size, steps=args.steps,
                     warmup=args.warmup, precision=args.precision, compile_backend=args.compile_backend)
    results = add_ratios(run_benchmark(spec, tuple(args.variants.split(","))))
    print(format_results(results, spec))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"spec": spec.__dict__, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
