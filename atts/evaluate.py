"""`python -m atts.evaluate`: kept for scripts and users; the code lives in `atts.commands.evaluate`."""

import sys

from atts.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
