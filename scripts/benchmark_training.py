#!/usr/bin/env python
"""Training throughput, side by side in one run: hand-written torch loops, a naive Trainer subclass, and

A checkout's entry point; installed users run `nlp-reuse benchmark-training` (see nlp_reuse/commands/benchmark_training.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["benchmark-training", *sys.argv[1:]]))
