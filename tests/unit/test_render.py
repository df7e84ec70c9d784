"""atts.analysis.render: the one number formatter bench, compare and report use."""

from atts.analysis.render import num, rate_ci, with_ci
from atts.commands.compare import markdown


def test_numbers_intervals_and_missing_values():
    assert num(0.12345) == "0.123" and num(2.0, 1) == "2.0" and num(7) == "7" and num(None) == "-"
    assert num(None, missing="–") == "–"
    assert with_ci(0.5, [0.41, 0.592]) == "0.500 [0.410, 0.592]"
    assert with_ci(0.5, [0.41, 0.592], ci_digits=2) == "0.500 [0.41, 0.59]"
    assert with_ci(0.5, None) == "0.500" and with_ci(None, [0, 1]) == "-"
    assert rate_ci({"rate": 0.25, "low": 0.1, "high": 0.4, "n": 12}) == "0.250 [0.100, 0.400]"
    assert rate_ci({"rate": None, "low": 0.0, "high": 1.0, "n": 0}) == "-"


def test_compare_table_cells():
    row = {"name": "atts", "policy": "atts", "pass@1": 0.5, "maj@k": None, "pass@k": 0.75, "takeover_rate": 0.2,
           "takeover_interval": [0.1234, 0.3], "target_token_share": 0.1, "tokens": {}, "latency_median": 1.25,
           "latency_p90": 2.0, "wall_seconds": 10.0, "throughput_samples_per_s": 1.5}
    line = markdown([row], 4).splitlines()[2]
    assert line.startswith("| atts | 0.500 | - | 0.750 | 0.200 [0.12, 0.30] | 0.100 |")
