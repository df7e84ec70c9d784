"""``python -m atts``: the same as the ``atts`` command."""

import sys

from atts.cli import main

if __name__ == "__main__":
    sys.exit(main())
