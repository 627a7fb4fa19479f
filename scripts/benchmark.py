#!/usr/bin/env python
"""Benchmark model folders and ONNX folders on the test split: accuracy, macro-F1, size, parameters, batch-1

A checkout's entry point; installed users run `nlp-reuse benchmark` (see nlp_reuse/commands/benchmark.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
