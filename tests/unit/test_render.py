"""atts.analysis.render: the one number formatter bench, compare and report use."""

from pathlib import Path

from atts.analysis.render import num, rate_ci, with_ci
from atts.analysis.report import Run, summary_rows
from atts.commands.compare import markdown, plot, spread


def test_numbers_intervals_and_missing_values():
    assert num(0.12345) == "0.123" and num(2.0, 1) == "2.0" and num(7) == "7" and num(None) == "-"
    assert num(None, missing="–") == "–"
    assert with_ci(0.5, [0.41, 0.592]) == "0.500 [0.410, 0.592]"
    assert with_ci(0.5, [0.41, 0.592], ci_digits=2) == "0.500 [0.41, 0.59]"
    assert with_ci(0.5, None) == "0.500" and with_ci(None, [0, 1]) == "-"
    assert rate_ci({"rate": 0.25, "low": 0.1, "high": 0.4, "n": 12}) == "0.250 [0.100, 0.400]"
    assert rate_ci({"rate": None, "low": 0.0, "high": 1.0, "n": 0}) == "-"


def test_compare_table_cells():
    row = {"name": "atts", "policy": "atts", "pass@1": 0.5, "pass@1_ci": [0.4, 0.6], "maj@k": None, "pass@k": 0.75, "takeover_rate": 0.2,
           "takeover_interval": [0.1234, 0.3], "target_token_share": 0.1, "tokens": {}, "latency_median": 1.25,
           "latency_p90": 2.0, "wall_seconds": 10.0, "throughput_samples_per_s": 1.5}
    line = markdown([row], 4).splitlines()[2]
    assert line.startswith("| atts | 0.500 [0.40, 0.60] | - | 0.750 | 0.200 [0.12, 0.30] | 0.100 |")


def test_report_summary_shows_the_clustered_intervals():
    s = {"dataset": "math500", "n_questions": 10, "samples_per_question": 4, "n_samples_completed": 40, "n_failed": 0,
         "pass@1": 0.5, "pass@1_ci": [0.35, 0.65], "maj@k": 0.6, "maj@k_ci": [0.3, 0.9], "pass@k": 0.8,
         "pass@k_ci": None, "alpha": 0.4,
         "takeover_rate": {"rate": 0.25, "k": 5, "n": 20, "low": 0.1, "high": 0.45, "interval": "cluster_bootstrap"}}
    run = Run(Path("r"), "r", {}, s, [], None, None)
    run.label = "atts"
    header, rows = summary_rows([run])
    cells = dict(zip(header, rows[0]))
    assert cells["pass@1 [95%]"] == "0.500 [0.350, 0.650]" and cells["maj@k [95%]"] == "0.600 [0.300, 0.900]"
    assert cells["pass@k [95%]"] == "0.800"  # no interval: the value alone
    assert cells["takeover rate [95%]"] == "0.250 [0.100, 0.450]"


def test_compare_plot_labels_do_not_crowd(tmp_path):
    ys = [0.672, 1.0, 0.688, 0.797, 0.484, 0.75, 0.906, 0.75, 0.656, 0.703, 0.609]  # docs/comparison.md's pass@1
    at = spread(ys, 0.045)
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    assert all(at[b] - at[a] >= 0.045 - 1e-12 for a, b in zip(order, order[1:]))  # apart, in the points' order
    assert at[1] == 1.0 and at[4] == 0.484  # a point with room keeps its label beside it
    assert spread([0.5, 0.5], 0.1) == [0.45, 0.55] and spread([], 0.1) == []
    rows = [{"name": f"p{i}", "pass@1": y, "pass@1_ci": [y - 0.1, min(1.0, y + 0.1)], "latency_median": 10 + i,
             "target_token_share": i / 10} for i, y in enumerate(ys)]
    plot(rows + [{"name": "no latency", "pass@1": 0.5}], tmp_path / "c.png", "t")
    assert (tmp_path / "c.png").stat().st_size > 10_000
