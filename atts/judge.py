"""`python -m atts.judge`: kept for scripts and users; the same as `atts judge` (the code lives in
`atts.analysis.judge`, the parser in `atts.cli`)."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main(["judge", *sys.argv[1:]]))
