"""Benchmark model folders and ONNX folders on a labelled test file: accuracy, macro-F1, size, parameters,
batch-1 latency p50/p95 and batch-32 throughput on a fixed number of CPU threads.

    python scripts/benchmark.py --models runs/demo/teacher runs/demo/distill/student runs/demo/distill/onnx \
        runs/demo/distill/onnx_int8 --names teacher student student_onnx student_int8 \
        --test_file data/test.jsonl --num_threads 2 --output_dir runs/demo/benchmark --compare teacher student_int8

Prints one table and writes benchmark.json, benchmark.md and benchmark.png; the measuring is done by
nlp_reuse.compress.benchmark.
"""

from __future__ import annotations

import json

from transformers import HfArgumentParser

from nlp_reuse.compress.arguments import BenchmarkArguments
from nlp_reuse.compress.benchmark import (
    format_markdown_table,
    run_benchmark,
    set_num_threads,
    speedup_summary,
    write_benchmark,
)
from nlp_reuse.compress.texts import load_labelled_texts


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(BenchmarkArguments)


def main(argv: list[str] | None = None) -> dict:
    (args,) = make_parser().parse_args_into_dataclasses(args=argv)
    # Swap point for nlp_reuse.data once it provides the project's loader (builtin:trec6, ...).
    texts, labels = load_labelled_texts(args.test_file, args.text_column, args.label_column,
                                        limit=args.max_test_examples)
    threads = set_num_threads(args.num_threads)
    print(f"threads: torch={threads}, onnxruntime intra_op={args.num_threads}; {len(texts)} test texts")
    rows = run_benchmark(args.models, texts, labels, names=args.names, num_threads=args.num_threads,
                         max_length=args.max_length, latency_calls=args.latency_calls,
                         throughput_calls=args.throughput_calls)
    extra = {"test_file": args.test_file}
    if args.compare:
        extra["comparison"] = {"reference": args.compare[0], "candidate": args.compare[1],
                               **speedup_summary(rows, *args.compare)}
    paths = write_benchmark(rows, args.output_dir, extra=extra)
    print(format_markdown_table(rows))
    if args.compare:
        print(json.dumps(extra["comparison"], indent=2))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return {"rows": [r.to_dict() for r in rows], **extra}


if __name__ == "__main__":
    main()
