"""The simulated runner makes the same decisions as the real runner on the same records.

Records are made by the real runner and the real ATTS policy against a deterministic
fake engine (`sim_fakes.make_atts_run`); `atts simulate` replays them through the same
runner and policy on simulated servers. Every step (turn, attempt, role, text, decision,
kept), every stop reason and every takeover must be the recorded one, whatever the
timing (pipelined pre-drafts race scoring differently on the simulated servers). The
research traces replay with 100% of their recorded takeover decisions too."""

import json

import pytest

from atts.sim.command import simulate
from sim_fakes import make_atts_run, make_research_traces

CPU = "configs/hardware/cpu_testbed.yaml"


def _steps(rec):
    return [(s["turn"], s["attempt"], s["role"], s["text"], s.get("decision"), s["kept"]) for s in rec["steps"]]


@pytest.mark.parametrize("mode,max_resample,pipeline", [("append", 0, True), ("replace", 2, True),
                                                        ("replace", 1, False)])
def test_simulated_runner_decides_as_the_real_runner(tmp_path, monkeypatch, mode, max_resample, pipeline):
    run = make_atts_run(tmp_path / "run", mode=mode, max_resample=max_resample, pipeline=pipeline)
    real = {json.loads(p.read_text())["key"]: json.loads(p.read_text()) for p in (run / "samples").glob("*.json")}
    captured = {}
    import atts.sim.command as cmd

    orig = cmd.replay_once

    def spy(*a, **k):
        r = orig(*a, **k)
        captured.setdefault("records", r["records"])
        return r

    monkeypatch.setattr(cmd, "replay_once", spy)
    doc = simulate(run, CPU, "concurrent", tmp_path / "sim", band=False, plot=False)
    sim = {r["key"]: r for r in captured["records"]}
    assert set(sim) == set(real)
    takeovers = 0
    for k, rec in real.items():
        assert _steps(sim[k]) == _steps(rec), k
        assert (sim[k]["status"], sim[k]["stop_reason"], sim[k]["text"]) == (rec["status"], rec["stop_reason"], rec["text"])
        takeovers += sum(s.get("decision") == "takeover" for s in rec["steps"])
    assert takeovers > 5  # the scenario exercises takeovers
    vr = doc["vs_recorded"]
    assert vr["decision_agreement"] == 1.0 and vr["decisions_compared"] == vr["decisions_recorded"]
    assert not doc["divergence"].get("target_unrecorded") and not doc["divergence"].get("score_unrecorded")


def test_research_traces_replay_with_their_recorded_decisions(shared_traces, tmp_path):
    p = make_research_traces(shared_traces, tmp_path / "t", n=48)
    doc = simulate(p, "configs/hardware/h100_r1llama8b_qwq32b.yaml", "research", tmp_path / "sim", band=False)
    vr = doc["vs_recorded"]
    assert vr["decisions_compared"] >= 0.99 * vr["decisions_recorded"] and vr["decision_agreement"] == 1.0
    assert doc["samples"] == 48 and doc["wall_seconds"] > 0
    assert vr["duration_correlation_r"] > 0.9
    assert (tmp_path / "sim" / "simulate.md").read_text().startswith("# atts simulate")
    assert doc["plot"] == "simulate.png" and (tmp_path / "sim" / "simulate.png").stat().st_size > 1000


def test_target_only_and_sync_ranked_run_on_research_traces(shared_traces, tmp_path):
    p = make_research_traces(shared_traces, tmp_path / "t", n=32)
    hw = "configs/hardware/h100_r1llama8b_qwq32b.yaml"
    to = simulate(p, hw, "target_only", tmp_path / "to", band=False, plot=False)
    assert to["draft_tokens_generated"] == 0 and to["target_tokens_generated"] > 32 * 500
    sr = simulate(p, hw, "sync_ranked", tmp_path / "sr", max_in_flight=20, band=False, plot=False)
    assert sr["schedule"]["max_in_flight"] == 32  # whole question groups
    assert sr["samples"] == 32
