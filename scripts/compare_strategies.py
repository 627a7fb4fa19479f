#!/usr/bin/env python
"""Compare transfer-learning strategies on one dataset with the same budget, in one table.

A checkout's entry point; installed users run `nlp-reuse compare-strategies`
(see nlp_reuse/commands/compare_strategies.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["compare-strategies", *sys.argv[1:]]))
