"""atts: asynchronous test-time scaling of reasoning LLMs via conformal prediction.

From code and notebooks: ``atts.run(config, **overrides)``, ``await atts.arun(...)`` and
``atts.load_run(path)`` (`atts.api`)."""

import importlib
from importlib.metadata import PackageNotFoundError, version as _dist_version

DISTRIBUTION = "atts-runtime"  # the name on the package index; the import name is `atts`
_SOURCE_VERSION = "0.1.0"  # pyproject.toml's version (tests/unit/test_packaging.py checks)
try:
    __version__ = _dist_version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that pip never installed
    __version__ = _SOURCE_VERSION

_API = ("run", "arun", "load_run", "Run")
__all__ = ["DISTRIBUTION", "__version__", *_API]


def __getattr__(name: str):
    """``atts.run`` etc. resolve on first use: `atts.api` imports the whole runtime, which
    ``import atts.errors`` (and ``atts --version``) should not pay for, and a top-level
    import here would make every module's ``from atts import ...`` an import circle."""
    if name in _API:
        return getattr(importlib.import_module("atts.api"), name)
    raise AttributeError(f"module 'atts' has no attribute {name!r}")
