"""`python -m atts.evaluate`: kept for scripts and users; the same as `atts evaluate` (the code lives in
`atts.commands.evaluate`, the parser in `atts.cli`)."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
