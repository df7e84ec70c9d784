"""Deterministic request seeds: every sampled request's seed is a hash of the run's base
seed and what the request is (question id, repeat, turn, role, attempt, ...), so a
sample draws the same chunks whatever else runs beside it, and a resumed or re-run
sample repeats itself. Layer 0: imports nothing from atts (the runtime and the policies
both use it). Whether an engine honours them is `atts.runtime.seed_support`'s concern."""

from __future__ import annotations

import hashlib


PHASES = ("calibration", "evaluation")


def request_seed(base: int, *parts, phase: str = "evaluation") -> int:
    """A 31-bit seed from the run seed, the phase and ``parts`` (question id, repeat,
    turn, role, attempt, ...): the same inputs give the same seed in every process. The
    phase salts it (issue 13 item 2): on an engine that honours seeds, an evaluated
    sample's chunks are then not replays of its calibration chunks."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    h = hashlib.sha256(repr((base, phase, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF  # the first 31 bits of sha256(repr)
