"""`python -m atts.reextract`: kept for scripts and users; the same as `atts reextract` (the code lives in
`atts.analysis.reextract`, the parser in `atts.cli`)."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main(["reextract", *sys.argv[1:]]))
