"""atts: asynchronous test-time scaling of reasoning LLMs via conformal prediction."""

from importlib.metadata import PackageNotFoundError, version as _dist_version

DISTRIBUTION = "atts-runtime"  # the name on the package index; the import name is `atts`
_SOURCE_VERSION = "0.1.0"  # pyproject.toml's version (tests/unit/test_packaging.py checks)
try:
    __version__ = _dist_version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that pip never installed
    __version__ = _SOURCE_VERSION
