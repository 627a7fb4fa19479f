#!/usr/bin/env python
"""Continued masked-LM pretraining of an encoder on unlabeled in-domain texts (domain adaptation).

A checkout's entry point; installed users run `nlp-reuse adapt` (see nlp_reuse/commands/adapt.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["adapt", *sys.argv[1:]]))
