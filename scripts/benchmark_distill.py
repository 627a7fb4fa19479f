#!/usr/bin/env python
"""Distillation over several seeds: teacher vs KD student vs no-KD baseline, mean and spread.

A checkout's entry point; installed users run `nlp-reuse benchmark-distill` (see nlp_reuse/commands/benchmark_distill.py).
"""

from nlp_reuse.commands.benchmark_distill import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
