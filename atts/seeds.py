"""Deterministic request seeds: every sampled request's seed is a hash of the run's base
seed and what the request is (question id, repeat, turn, role, attempt, ...), so a
sample draws the same chunks whatever else runs beside it, and a resumed or re-run
sample repeats itself. Layer 0: imports nothing from atts (the runtime and the policies
both use it)."""

from __future__ import annotations

import hashlib


def request_seed(base: int, *parts) -> int:
    h = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF  # the first 31 bits of sha256(repr)
