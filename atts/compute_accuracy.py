"""`python -m atts.compute_accuracy`: kept for scripts and users; the code lives in `atts.analysis.grade`."""

import sys

from atts.analysis.grade import main

if __name__ == "__main__":
    sys.exit(main())
