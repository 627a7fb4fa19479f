#!/usr/bin/env python
"""Distill a fine-tuned teacher classifier into a smaller student, and report what was gained and lost.

A checkout's entry point; installed users run `nlp-reuse distill` (see nlp_reuse/commands/distill.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
