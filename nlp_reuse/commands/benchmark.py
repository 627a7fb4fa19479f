"""Benchmark model, ONNX and OpenVINO folders (from `nlp-reuse compress --openvino`) on the test split: accuracy,
macro-F1, size, parameters, batch-1 latency p50/p95 and batch-32 throughput on a fixed number of CPU threads.

Example:
    nlp-reuse benchmark --dataset_name builtin:trec6 --num_threads 2 --output_dir runs/demo/benchmark \\
        --models runs/demo/teacher runs/demo/distill/student runs/demo/distill/onnx runs/demo/distill/onnx_int8 \\
        --names teacher student student_onnx student_int8 --compare teacher student_int8

Prints one table and writes benchmark.json, benchmark.md and benchmark.png to --output_dir (an earlier benchmark there
is refused before anything is measured, unless --overwrite true); the measuring is done by nlp_reuse.compress.benchmark.
"""

import json

from nlp_reuse.cli import make_parser, parse_args
from nlp_reuse.compress.arguments import BenchmarkArguments
from nlp_reuse.compress.benchmark import (
    benchmark_paths,
    format_markdown_table,
    run_benchmark,
    set_num_threads,
    speedup_summary,
    write_benchmark,
)
from nlp_reuse.compress.labels import model_label_names, split_texts
from nlp_reuse.config import DataArguments
from nlp_reuse.data import load_splits


def main(argv: list[str] | None = None) -> dict:
    data_args, args = parse_args(make_parser((DataArguments, BenchmarkArguments), __doc__), argv)
    benchmark_paths(args.output_dir, overwrite=args.overwrite)  # refuse before minutes of timing
    # Label names come from the first model; every model maps them to its own ids (label2id) when measured.
    splits, _ = load_splits(data_args, label_names=model_label_names(args.models[0]))
    texts, labels = split_texts(splits, "test")
    threads = set_num_threads(args.num_threads)
    print(f"threads: torch={threads}, onnxruntime intra_op={args.num_threads}; {len(texts)} test texts")
    rows = run_benchmark(args.models, texts, labels, names=args.names, num_threads=args.num_threads,
                         max_length=data_args.max_length, latency_calls=args.latency_calls,
                         throughput_calls=args.throughput_calls)
    extra = {"data": data_args.dataset_name or data_args.test_file or data_args.train_file}
    if args.compare:
        extra["comparison"] = {"reference": args.compare[0], "candidate": args.compare[1],
                               **speedup_summary(rows, *args.compare)}
    paths = write_benchmark(rows, args.output_dir, extra=extra, overwrite=args.overwrite)
    print(format_markdown_table(rows))
    if args.compare:
        print(json.dumps(extra["comparison"], indent=2))
    print("Written: " + ", ".join(str(p) for p in paths.values()))
    return {"rows": [r.to_dict() for r in rows], **extra}


if __name__ == "__main__":
    main()
