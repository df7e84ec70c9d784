"""`python -m atts.compute_accuracy`: kept for scripts and users; the same as `atts grade` (the code lives in
`atts.analysis.grade`, the parser in `atts.cli`)."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main(["grade", *sys.argv[1:]]))
