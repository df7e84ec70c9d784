"""Fitting a linear (CPU testbed) profile from a run's own request timings."""

import json
import random

import pytest
import yaml

from atts.sim.command import simulate
from atts.sim.fit import fit_linear_profile
from atts.sim.hardware import load_hardware
from sim_fakes import make_atts_run


def _write_run(d, wall, batch_hint, rng):
    """A run dir whose requests cost 20 ms + 0.1 ms per uncached prompt token + 4 ms per
    output token (draft) / 30 ms + 0.3 ms + 10 ms (target), with 1% noise."""
    (d / "samples").mkdir(parents=True)
    steps = []
    for i in range(200):
        for role, (o, p, t) in (("draft", (0.02, 1e-4, 4e-3)), ("target", (0.03, 3e-4, 1e-2))):
            prompt, cached, out = rng.randint(100, 3000), 0, rng.randint(0, 500)
            cached = rng.randint(0, prompt - 1)
            s = (o + p * (prompt - cached) + t * out) * (1 + rng.gauss(0, 0.01))
            steps.append({"requests": [{"kind": "generate", "role": role, "prompt_tokens": prompt,
                                        "cached_tokens": cached, "output_tokens": out, "service_s": s,
                                        "queue_s": 0.0}]})
    (d / "samples" / "q00000-r000.json").write_text(json.dumps({"steps": steps}))
    (d / "summary.json").write_text(json.dumps({"wall_seconds": wall}))


def test_fit_recovers_the_request_costs(tmp_path):
    _write_run(tmp_path / "run", 1000.0, 4, random.Random(0))
    prof = fit_linear_profile([tmp_path / "run"], {"draft": 50_000, "target": 40_000})
    d, t = prof["roles"]["draft"], prof["roles"]["target"]
    assert d["request_overhead_ms"] == pytest.approx(20, rel=0.1)
    assert d["prefill_token_ms"] == pytest.approx(0.1, rel=0.05) and d["step_ms"] == pytest.approx(4, rel=0.05)
    assert t["step_ms"] == pytest.approx(10, rel=0.05) and t["kv_capacity_tokens"] == 40_000
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(prof))
    assert load_hardware(p).cost("target").decode_step(1, 0) == pytest.approx(0.010, rel=0.05)


def test_fitted_profile_replays_its_own_run(tmp_path):
    run = make_atts_run(tmp_path / "run", n_questions=3, k=2)
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(fit_linear_profile([run])))
    doc = simulate(run, p, "concurrent", tmp_path / "sim", band=True, plot=False)
    assert doc["wall_seconds"] > 0 and doc["vs_recorded"]["real_wall_seconds"] is not None
    assert doc["sensitivity"]["slow"]["wall_seconds"] >= doc["wall_seconds"] >= doc["sensitivity"]["fast"]["wall_seconds"]
