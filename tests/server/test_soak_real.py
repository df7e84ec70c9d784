"""The CI version of the soak (scripts/soak.sh): a short bounded run through 10% injected
faults against the testbed servers, its report, and no leaked file descriptors."""

import json
import subprocess

import pytest

from conftest import ROOT

pytestmark = pytest.mark.server


def test_short_soak_reports_and_leaks_nothing(testbed, tmp_path):
    out = tmp_path / "soak"
    cmd = ["bash", str(ROOT / "scripts/soak.sh"), "--config", str(ROOT / "configs/testbed.yaml"), "--duration", "15", "--fault-rate", "0.1", "--concurrency", "32",
           "--round-questions", "4", "--samples-per-question", "2", "--calibration-limit", "10",
           # the fault schedule: faults from the draft's 9th and the target's 3rd request, none
           # `slow` in their first 100 (seed 0's first draft fault is its 36th: a 15 s phase may end first)
           "--seed", "1",
           "--output", str(out)]
    for s in ("draft.launch=false", "target.launch=false", f"draft.urls=[{testbed.urls['draft']}]",
              f"target.urls=[{testbed.urls['target']}]"):
        cmd += ["--set", s]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = json.loads((out / "soak.json").read_text())
    print({k: rep[k] for k in ("wall_s", "rounds", "samples_completed", "samples_failed", "retries", "peak_rss_mb",
                               "peak_fds", "fds_start", "fds_end")})
    assert 14 <= rep["wall_s"] <= 60  # no round starts in the duration's last second: one may end the phase there
    assert rep["samples_completed"] > 0 and rep["samples_failed"] == 0 and rep["n_integrity_problems"] == 0
    for role in ("draft", "target"):
        injected = sum(v for k, v in rep["injected"][role].items() if k not in ("requests", "forwarded"))
        assert injected > 0 and rep["retries"][role] > 0
    assert rep["fds_end"] <= rep["fds_start"] + 5  # every connection closed at the end
    assert rep["peak_fds"] < 1024 and rep["peak_rss_mb"] > 0
    assert "Traceback" not in r.stderr
