#!/usr/bin/env python
"""Fine-tune a pretrained encoder into a text classifier (usually the teacher for scripts/distill.py).

A checkout's entry point; installed users run `nlp-reuse finetune` (see nlp_reuse/commands/finetune.py).
"""

from nlp_reuse.commands.finetune import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
