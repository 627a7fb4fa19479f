#!/usr/bin/env python
"""Push a finished run to a Hugging Face Hub repo with its generated model card, or write the upload folder.

A checkout's entry point; installed users run `nlp-reuse push` (see nlp_reuse/commands/push.py).
"""

from nlp_reuse.commands.push import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
