"""atts: asynchronous test-time scaling of reasoning LLMs via conformal prediction."""

__version__ = "0.1.0"
