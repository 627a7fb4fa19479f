#!/usr/bin/env python
"""Fine-tune a pretrained encoder into a text classifier (usually the teacher for scripts/distill.py).

A checkout's entry point; installed users run `nlp-reuse finetune` (see nlp_reuse/commands/finetune.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
