"""`python -m atts.judge`: kept for scripts and users; the code lives in `atts.analysis.judge`."""

import sys

from atts.analysis.judge import main

if __name__ == "__main__":
    sys.exit(main())
