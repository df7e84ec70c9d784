"""Issue 13 item 6: the conformal docstring's exact rates, measured. alpha = 0.33 with
n = 9 calibration scores separates them: the randomised p-value's rate is alpha (0.33),
the deterministic rule's floor((n+1) alpha)/(n+1) = 0.3."""

import random

from atts.method.conformal import ConformalCalibration
from atts.runtime.summary import wilson_interval


def test_randomised_p_value_rate_is_alpha_exactly_and_the_deterministic_rule_floors_it():
    rng = random.Random(13)
    alpha, n, trials = 0.33, 9, 40000
    det = rnd = 0
    for _ in range(trials):
        cal = ConformalCalibration(tuple(rng.random() for _ in range(n)), alpha)
        s = rng.random()
        det += cal.takeover(s)
        rnd += cal.takeover(s, u=rng.random())
    lo, hi = wilson_interval(rnd, trials, z=3.29)  # independent trials: a binomial interval is right here
    assert lo <= alpha <= hi, rnd / trials
    lo, hi = wilson_interval(det, trials, z=3.29)
    assert lo <= 0.3 <= hi and hi < alpha, det / trials
