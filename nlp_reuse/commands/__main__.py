"""`python -m nlp_reuse.commands <command> ...` is the same as `nlp-reuse <command> ...`."""

import sys

from nlp_reuse.commands import main

if __name__ == "__main__":
    sys.exit(main())
