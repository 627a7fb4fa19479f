#!/usr/bin/env python
"""Distill a fine-tuned teacher classifier into a smaller student, and report what was gained and lost.

A checkout's entry point; installed users run `nlp-reuse distill` (see nlp_reuse/commands/distill.py).
"""

from nlp_reuse.commands.distill import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
