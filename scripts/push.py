#!/usr/bin/env python
"""Push a finished run to a Hugging Face Hub repo with its generated model card, or write the upload folder.

A checkout's entry point; installed users run `nlp-reuse push` (see nlp_reuse/commands/push.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["push", *sys.argv[1:]]))
