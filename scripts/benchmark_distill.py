#!/usr/bin/env python
"""Distillation over several seeds: teacher vs KD student vs no-KD baseline, mean and spread.

A checkout's entry point; installed users run `nlp-reuse benchmark-distill`
(see nlp_reuse/commands/benchmark_distill.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["benchmark-distill", *sys.argv[1:]]))
