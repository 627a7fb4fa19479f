#!/usr/bin/env python
"""Training throughput, side by side in one run: hand-written torch loops, a naive Trainer subclass, and

A checkout's entry point; installed users run `nlp-reuse benchmark-training` (see nlp_reuse/commands/benchmark_training.py).
"""

from nlp_reuse.commands.benchmark_training import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
