"""Shared test support, importable by tests, scripts and the soak: in-process fake engines
and prompters (``fakes``) and the real-server testbed launcher (``testbed``)."""
