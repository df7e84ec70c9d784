"""`python -m atts.reextract`: kept for scripts and users; the code lives in `atts.analysis.reextract`."""

import sys

from atts.analysis.reextract import main

if __name__ == "__main__":
    sys.exit(main())
