#!/usr/bin/env python
"""Prune -> distill-recover -> QAT -> int8 (+ OpenVINO) in one command, every artefact measured.

A checkout's entry point; installed users run `nlp-reuse compress` (see nlp_reuse/commands/compress.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["compress", *sys.argv[1:]]))
