#!/usr/bin/env python
"""Export a trained classifier folder to a deployable ONNX artefact (optionally pruned / low-rank, int8).

A checkout's entry point; installed users run `nlp-reuse export` (see nlp_reuse/commands/export.py).
"""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
