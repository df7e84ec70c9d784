"""The conformal decision rule and its guarantee, tested empirically."""

import math
import random

import pytest

from atts.method.conformal import CalibrationError, CalibrationFile, ConformalCalibration, ConformalGate
from atts.runtime.summary import wilson_interval


def test_p_value_rule_equals_quantile_rule_including_ties():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 60)
        scores = [rng.choice([1.0, 1.5, 2.0, 2.5, 3.0]) if rng.random() < 0.5 else rng.random() * 3 for _ in range(n)]
        alpha = rng.choice([0.05, 0.1, 0.2, 0.4, 0.5, 0.9])
        cal = ConformalCalibration(tuple(scores), alpha)
        for s in scores + [rng.random() * 3.5 for _ in range(20)]:
            p = (1 + sum(x >= s for x in scores)) / (n + 1)
            assert math.isclose(cal.p_value(s), p)
            assert cal.takeover(s) == (p <= alpha) == (s > cal.quantile)


def test_quantile_rank_and_never_when_k_exceeds_n():
    cal = ConformalCalibration((1.0, 2.0, 3.0, 4.0), 0.4)  # k = ceil(5 * 0.6) = 3
    assert cal.rank == 3 and cal.quantile == 3.0
    tiny = ConformalCalibration((1.0, 2.0), 0.1)  # k = ceil(3 * 0.9) = 3 > 2
    assert tiny.quantile == math.inf and not tiny.takeover(1e9)


@pytest.mark.parametrize("alpha", [0.1, 0.3, 0.4])
@pytest.mark.parametrize("n", [19, 100])
def test_empirical_takeover_rate_within_binomial_interval(alpha, n):
    """Exchangeable scores: P(takeover) = floor((n+1) alpha)/(n+1) in [alpha - 1/(n+1), alpha].
    Draw many calibration sets and test points; the observed rate must lie in the 99.9%
    binomial interval around that probability, and the probability in the guarantee."""
    rng = random.Random(1234 + n)
    trials, hits = 20000, 0
    for _ in range(trials):
        cal = ConformalCalibration(tuple(rng.lognormvariate(0, 1) for _ in range(n)), alpha)
        hits += cal.takeover(rng.lognormvariate(0, 1))
    p = math.floor((n + 1) * alpha) / (n + 1)
    assert alpha - 1 / (n + 1) <= p <= alpha
    lo, hi = wilson_interval(hits, trials, z=3.29)
    assert lo <= p <= hi, (hits / trials, p)


def test_gate_groupings():
    g = ConformalGate("per_turn", {"turn:0": ConformalCalibration((1.0, 2.0, 3.0), 0.5),
                                   "turn:2": ConformalCalibration((10.0, 20.0, 30.0), 0.5)})
    assert g.key("q", 0) == "turn:0" and g.key("q", 1) == "turn:0" and g.key("q", 7) == "turn:2"
    assert g.decide(5.0, "q", 1).takeover and not g.decide(5.0, "q", 3).takeover
    pq = ConformalGate("per_question", {"q:a": ConformalCalibration((1.0,), 0.5)})
    with pytest.raises(CalibrationError):
        pq.key("b", 0)


def test_calibration_file_roundtrip_and_checks(tmp_path):
    f = CalibrationFile("marginal", {"all": [1.0, 1.2, 3.0]}, {"draft_model": "d", "target_model": "t"})
    p = tmp_path / "cal.json"
    f.save(p)
    g = CalibrationFile.load(p)
    assert g.hash == f.hash and g.scores == f.scores
    g.check_compatible({"draft_model": "d", "target_model": "t"})
    with pytest.raises(CalibrationError, match="target_model"):
        g.check_compatible({"draft_model": "d", "target_model": "other"})
    p.write_text(p.read_text().replace("1.2", "1.3"))
    with pytest.raises(CalibrationError, match="hash"):
        CalibrationFile.load(p)
    with pytest.raises(CalibrationError, match="not found"):
        CalibrationFile.load(tmp_path / "missing.json")
    pt = CalibrationFile("per_turn", {"turn:0": [1.0]}, {}, alpha=0.4)
    with pytest.raises(CalibrationError, match="alpha"):
        pt.gate(0.2)


def test_randomized_ties_restore_the_rate_and_quantization_absorbs_noise():
    """Scores with a big tie (like answer chunks at PPL 1.00001 plus float noise):
    the deterministic rule is conservative, the smoothed p-value hits alpha."""
    rng = random.Random(5)
    alpha, n, trials = 0.7, 99, 20000

    def draw():  # 80% of scores are one value up to 1e-7 noise, the rest spread out
        return 1.00001 + rng.uniform(-1e-7, 1e-7) if rng.random() < 0.8 else 1 + rng.random()

    det = rnd = 0
    for _ in range(trials):
        cal = ConformalCalibration(tuple(draw() for _ in range(n)), alpha, resolution=1e-5)
        s = draw()
        det += cal.takeover(s)
        rnd += cal.takeover(s, u=rng.random())
    lo, hi = wilson_interval(rnd, trials, z=3.29)
    p = math.floor((n + 1) * alpha) / (n + 1)
    assert lo <= p <= hi, rnd / trials
    assert det / trials < alpha - 0.2  # conservative without randomization
