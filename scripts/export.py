#!/usr/bin/env python
"""Export a trained classifier folder to a deployable ONNX artefact (optionally pruned / low-rank, int8).

A checkout's entry point; installed users run `nlp-reuse export` (see nlp_reuse/commands/export.py).
"""

from nlp_reuse.commands.export import main
from nlp_reuse.pipeline import release_distributed

if __name__ == "__main__":
    main()
    release_distributed()
