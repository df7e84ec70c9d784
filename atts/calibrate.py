"""`python -m atts.calibrate`: kept for scripts and users; the same as `atts calibrate` (the code lives in
`atts.commands.calibrate`, the parser in `atts.cli`)."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
