#!/usr/bin/env python
"""The speed frontier: students of several families and sizes, each against its no-KD baseline, exported and timed
beside the teacher in one process; the most accurate within a latency budget.

A checkout's entry point; installed users run `nlp-reuse frontier` (see nlp_reuse/commands/frontier.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["frontier", *sys.argv[1:]]))
