"""Per-turn calibration's late turns (`atts.commands.calibrate.TurnGroups`): from the
first turn with fewer than ``min_per_turn`` scores, every later turn is pooled, so the
last group holds the scores of every turn the gate maps to it."""

import random

import pytest

from atts.commands.calibrate import TurnGroups
from atts.engines.sglang import EngineError
from atts.method.conformal import CalibrationFile
from atts.runtime.summary import wilson_interval


def _built(counts: list[int], m: int = 30) -> dict[str, list[float]]:
    g = TurnGroups(m)
    for t, n in enumerate(counts):
        g.add(t, [float(t) + i / 1000 for i in range(n)])
    return g.finish()


def test_late_turns_pool_into_their_own_group_once_they_have_enough():
    groups = _built([60, 53, 35, 20, 12, 4])
    assert {k: len(v) for k, v in groups.items()} == {"turn:0": 60, "turn:1": 53, "turn:2": 35, "turn:3": 36}
    assert sorted({int(s) for s in groups["turn:3"]}) == [3, 4, 5]  # turns 3, 4 and 5 pooled


def test_a_pool_that_stays_small_joins_the_last_group():
    groups = _built([60, 40, 10, 5])
    assert {k: len(v) for k, v in groups.items()} == {"turn:0": 60, "turn:1": 55}
    assert sorted({int(s) for s in groups["turn:1"]}) == [1, 2, 3]


def test_a_turn_after_the_pool_started_is_pooled_even_when_it_is_large():
    groups = _built([60, 20, 45])  # turn 2 alone would be enough, but turn 1 already started the pool
    assert {k: len(v) for k, v in groups.items()} == {"turn:0": 60, "turn:1": 65}


def test_too_few_turn_0_scores_is_an_error():
    with pytest.raises(EngineError, match="turn-0 scores"):
        TurnGroups(30).add(0, [1.0] * 29)


def test_pooled_tail_holds_alpha_where_reusing_the_last_full_turn_did_not():
    """Scores whose level rises with the turn (as the testbed's right chunks' PPL does:
    docs/testbed_results.md), calibration and evaluation drawn from the same turn mix.
    Over the late turns pooled, the pooled group's takeover rate lies within alpha's
    guarantee; turn 2's scores, which the late turns reused before, take over far more."""
    rng = random.Random(7)
    counts, alpha = [60, 53, 35, 23, 12, 4], 0.4
    draw = lambda t: rng.lognormvariate(0.05 * t, 0.05)  # noqa: E731
    late = [t for t, n in enumerate(counts) if t >= 3 for _ in range(n)]  # the late turns' mix
    new_hits = old_hits = trials = 0
    for _ in range(400):
        g = TurnGroups(30)
        for t, n in enumerate(counts):
            g.add(t, [draw(t) for _ in range(n)])
        gate = CalibrationFile("per_turn", g.finish(), {}, alpha).gate(alpha)
        assert gate.key("q", 5) == "turn:3"
        reuse = CalibrationFile("per_turn", {k: v for k, v in g.groups.items() if k != "turn:3"}, {}, alpha).gate(alpha)
        for _ in range(10):
            t = rng.choice(late)
            s = draw(t)
            new_hits += gate.decide(s, "q", t).takeover
            old_hits += reuse.decide(s, "q", t).takeover
            trials += 1
    lo, hi = wilson_interval(new_hits, trials, z=3.29)
    assert lo <= alpha and hi >= alpha - 1 / 40, (new_hits / trials, lo, hi)
    assert old_hits / trials > 0.8, old_hits / trials
