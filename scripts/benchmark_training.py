#!/usr/bin/env python
"""Training throughput, side by side in one run: hand-written torch loops, a naive Trainer subclass, and
nlp_reuse's DistillationTrainer (live teacher, cached teacher logits, torch.compile).

Random-weight BERT pairs (minilm: 6 -> 3 layers, hidden 384; bert-base: 12 -> 6 layers, hidden 768) on synthetic
fixed-length data. Each variant runs in a fresh process, one after the other. CPU by default; GPU when present.
The harness is benchmarks/training_throughput.py, a folder of the checkout (not installed with the package).

Examples:
    python scripts/benchmark_training.py --shape minilm --seq_len 64 --batch_size 32
    python scripts/benchmark_training.py --shape bert-base --seq_len 128 --batch_size 256 --precision bf16  # GPU
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from nlp_reuse.cli import HelpFormatter
from nlp_reuse.errors import USER_ERRORS, ConfigError, format_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's benchmarks/ folder
from benchmarks.training_throughput import (  # noqa: E402
    SHAPES,
    VARIANTS,
    BenchSpec,
    add_ratios,
    format_results,
    run_benchmark,
)


@dataclass
class Arguments:
    shape: str = field(default="minilm", metadata={"help": f"Model pair shape: {' | '.join(SHAPES)}."})
    seq_len: int = field(default=64, metadata={"help": "Tokens per example."})
    batch_size: int = field(default=32, metadata={"help": "Examples per step."})
    steps: int = field(default=20, metadata={"help": "Timed steps per variant (after the warm-up)."})
    warmup: int = field(default=3, metadata={"help": "Untimed warm-up steps (compilation happens here)."})
    precision: str = field(default="fp32", metadata={"help": "fp32 | bf16 (autocast; bf16 teacher weights)."})
    variants: str = field(default=",".join(VARIANTS), metadata={"help": "Comma-separated variants to run."})
    compile_backend: str = field(default="inductor",
                                 metadata={"help": "torch.compile backend of the compiled variant."})
    output_json: str = field(default=None, metadata={"help": "Also write the results here as JSON."})

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ConfigError(format_error("Unknown --shape.", " | ".join(SHAPES), repr(self.shape),
                                           "pick one of the expected shapes"))
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(format_error("Unknown --precision.", "fp32 | bf16", repr(self.precision),
                                           "use bf16 on hardware with bf16 support, fp32 elsewhere"))
        unknown = sorted(set(self.variants.split(",")) - set(VARIANTS))
        if unknown:
            raise ConfigError(format_error("Unknown --variants.", f"a comma-separated subset of {','.join(VARIANTS)}",
                                           ", ".join(unknown), "drop or correct the unknown names"))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = HfArgumentParser(Arguments, description=__doc__, formatter_class=HelpFormatter)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    spec = BenchSpec(shape=args.shape, seq_len=args.seq_len, batch_size=args.batch_size, steps=args.steps,
                     warmup=args.warmup, precision=args.precision, compile_backend=args.compile_backend)
    results = add_ratios(run_benchmark(spec, tuple(args.variants.split(","))))
    print(format_results(results, spec))
    if args.output_json:
        Path(args.output_json).write_text(json.dumps({"spec": spec.__dict__, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as err:  # a bad flag: the message says what to fix; bugs keep their traceback
        print(f"benchmark_training.py: error: {err}", file=sys.stderr)
        sys.exit(2)
