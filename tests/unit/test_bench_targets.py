"""atts bench's planning targets come from configs/bench_targets.yaml, not library code;
the checks give what the hard-coded ones gave."""

import pytest

from atts.commands.bench import check_targets, load_targets
from atts.errors import ConfigError

ROWS = {"atts": {"wall_seconds": 40.0, "pass@1": 0.49, "latency_median": 2.0, "cache_hit_rate_scoring": 0.9123456},
        "target_only": {"wall_seconds": 100.0, "pass@1": 0.5, "latency_median": 5.0},
        "atts_unpipelined": {"wall_seconds": 50.0, "pass@1": 0.49, "latency_median": 2.5},
        "sync_ranked": {"wall_seconds": 50.0, "pass@1": 0.48, "latency_median": 3.0}}
ORCH = {"512": {"cpu_fraction_of_wall": 0.0123456}}


def test_targets_from_the_yaml_give_the_former_checks():
    got = {t["target"]: (t["measured"], t["goal"], t["met"]) for t in check_targets(ROWS, ORCH)}
    assert got == {
        "atts wall / target_only wall": (0.4, "<= 0.5", True),
        "atts pass@1 - target_only pass@1": (-0.01, ">= -0.02", True),
        "sync_ranked wall / atts wall (same budget)": (1.25, ">= 1.5", False),
        "unpipelined / pipelined median latency": (1.25, ">= 1.3", False),
        "orchestrator CPU / wall at 512 samples": (0.0123, "<= 0.02", True),
        "atts scoring prompt tokens from radix cache": (0.9123, ">= 0.8", True),
    }
    assert [t["target"] for t in check_targets({"atts": ROWS["atts"]}, {})] == \
        ["atts scoring prompt tokens from radix cache"]  # targets without their rows are left out


def test_a_goal_is_data(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("targets:\n  - {measure: atts_wall_over_target_only, label: w, op: '<=', goal: 0.3}\n")
    assert check_targets(ROWS, ORCH, load_targets(p)) == [{"target": "w", "measured": 0.4, "goal": "<= 0.3",
                                                           "met": False}]
    p.write_text("targets:\n  - {measure: nope, label: w, op: '<=', goal: 0.3}\n")
    with pytest.raises(ConfigError, match=r"targets\[0\]: needs label, measure"):
        load_targets(p)
