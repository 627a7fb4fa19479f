#!/usr/bin/env python
"""Compare transfer-learning strategies on one dataset with the same budget, in one table.

A checkout's entry point; installed users run `nlp-reuse compare-strategies` (see nlp_reuse/commands/compare_strategies.py).
"""

from nlp_reuse.commands.compare_strategies import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
