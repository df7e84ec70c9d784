"""Nothing left behind, nothing lost (issue 16), on the real testbed: atts started in the
background with SIGINT ignored, as a batch script starts it
(``bash -c 'trap "" INT; exec python -m atts.evaluate ...' &``), launching its own
servers:

- SIGTERM stops it cleanly within 30 s (exit 143), servers stopped;
- SIGKILL leaves no process it launched alive after 20 s (the watchdogs);
- in both cases a rerun of the same command completes exactly the missing samples;
- a server left behind on purpose by a previous launch is reported in one line and
  stopped at the next start into the same place.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from atts.serving.sglang import _pid_alive, start_server, write_records
from atts.serving.spec import ServerSpec
from conftest import MODELS, ROOT

pytestmark = pytest.mark.server

LIMIT, K = 8, 2  # 16 whole reasoning traces: a stop after the first two lands mid-run


def _cmd(out):
    return [sys.executable, "-m", "atts.evaluate", "--config", str(ROOT / "configs/testbed.yaml"), "--policy",
            "target_only", "--limit", str(LIMIT), "--samples-per-question", str(K), "--output-dir", str(out),
            "--no-progress"]


def _background(out, log):
    """As a script's `cmd &`: a non-interactive shell that ignores SIGINT, exec'ing atts."""
    return subprocess.Popen(["bash", "-c", 'trap "" INT; exec "$@"', "bash", *_cmd(out)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def _tree_once_sampling(proc, out, timeout=400) -> list[int]:
    """Every process atts launched (watchdogs, servers, their children), once samples exist."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "atts exited before sampling"
        samples = out / "samples"
        if samples.is_dir() and len(list(samples.glob("*.json"))) >= 2:
            rec = json.loads((out / "servers.json").read_text())
            pids = [rec[r]["pid"] for r in ("draft", "target")]
            return pids + [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
        time.sleep(0.2)
    raise AssertionError("no samples within the start-up timeout")


def _sigint_ignored(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        ign = int(next(l for l in f if l.startswith("SigIgn:")).split()[1], 16)
    return bool(ign & (1 << (signal.SIGINT - 1)))


def _rerun_completes_the_missing(out):
    before = len(list((out / "samples").glob("*.json")))
    assert 0 < before < LIMIT * K, "the stop must land mid-run for the resume check to mean anything"
    r = subprocess.run(_cmd(out), cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_this_invocation"] == LIMIT * K - before  # exactly the missing ones
    assert len(list((out / "samples").glob("*.json"))) == LIMIT * K


def test_sigterm_with_sigint_ignored_stops_cleanly_within_30s(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "atts.log", "w") as log:
        proc = _background(out, log)
        tree = _tree_once_sampling(proc, out)
        assert _sigint_ignored(proc.pid), "the test must start atts as a script's background job does"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    text = (tmp_path / "atts.log").read_text()
    assert rc == 143, text[-3000:]
    assert "terminated (SIGTERM): stopped cleanly" in text and "Traceback" not in text
    assert took < 30 and not [p for p in tree if _pid_alive(p)], "server processes outlived atts"
    _rerun_completes_the_missing(out)


def test_sigkill_leaves_no_launched_process_after_20s(tmp_path):
    out = tmp_path / "run"
    with open(tmp_path / "atts.log", "w") as log:
        proc = _background(out, log)
        tree = _tree_once_sampling(proc, out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [p for p in tree if _pid_alive(p)]:
        time.sleep(0.5)
    left = [p for p in tree if _pid_alive(p)]
    for p in left:  # do not leak them into the next test, but fail
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes launched by atts alive 20 s after its SIGKILL: {left}"
    _rerun_completes_the_missing(out)


def test_stale_server_is_reported_and_stopped_at_the_next_start(tmp_path):
    """A target server recorded in OUT/logs as a previous run's, still running (as one left
    by an atts older than the watchdog, or whose whole process group was SIGSTOPped)."""
    out = tmp_path / "run"
    spec = ServerSpec("target", str(MODELS / "chain-target"), context_length=4096, cpu_threads=1)
    stale = start_server(spec, out / "logs", detached=True)
    stale_tree = [stale.pid]
    try:
        write_records([stale], out / "logs", out / "servers.json")
        for path in (out / "logs" / "servers.json", out / "servers.json"):  # as a run (not `servers start`) wrote it
            doc = json.loads(path.read_text())
            doc["target"]["detached"] = False
            path.write_text(json.dumps(doc))
        time.sleep(3)
        stale_tree += [c.pid for c in psutil.Process(stale.pid).children(recursive=True)]
        r = subprocess.run(_cmd(out)[:-1] + ["--limit", "1", "--samples-per-question", "1", "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        lines = [l for l in r.stderr.splitlines() if f"target pid {stale.pid}" in l]
        assert len(lines) == 1 and "still running" in lines[0], r.stderr[-3000:]
        assert not [p for p in stale_tree if _pid_alive(p)], "the stale server was not stopped"
    finally:
        for p in stale_tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
