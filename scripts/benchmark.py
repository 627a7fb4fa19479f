#!/usr/bin/env python
"""Benchmark model folders and ONNX folders on the test split: accuracy, macro-F1, size, parameters, batch-1

A checkout's entry point; installed users run `nlp-reuse benchmark` (see nlp_reuse/commands/benchmark.py).
"""

from nlp_reuse.commands.benchmark import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
