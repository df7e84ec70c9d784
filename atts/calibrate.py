"""`python -m atts.calibrate`: kept for scripts and users; the code lives in `atts.commands.calibrate`."""

import sys

from atts.commands.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
