#!/usr/bin/env python
"""Self-training: label unlabeled texts with a fine-tuned classifier, keep the confident ones for finetune.

A checkout's entry point; installed users run `nlp-reuse pseudo-label` (see nlp_reuse/commands/pseudo_label.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["pseudo-label", *sys.argv[1:]]))
