"""The target server is killed (SIGKILL, whole process tree) halfway through a run: the
run stops within a bounded time with a clear message and exit code 4, every record on
disk is valid JSON and none is marked failed for the server's death; a rerun against a
freshly started server (a new URL: the run hash excludes URLs) runs exactly the missing
samples."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from atts.serving.sglang import ServerGroup, ServerSpec, _pid_alive
from conftest import MODELS, ROOT

pytestmark = pytest.mark.server

LIMIT, K = 4, 2
STOP_BOUND_S = 60


@pytest.fixture(scope="module")
def doomed_target(tmp_path_factory):
    """A target server of this module's own, to kill."""
    group = ServerGroup([ServerSpec("target", str(MODELS / "chain-target"), context_length=4096, cpu_threads=1)],
                        tmp_path_factory.mktemp("doomed-logs"), timeout=300)
    urls = group.__enter__()
    try:
        yield urls["target"], group.servers[0].pid
    finally:
        group.__exit__(None, None, None)


def _kill_tree(pid: int) -> list[int]:
    tree = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def _cmd(out, draft_url, target_url):
    cmd = [sys.executable, "-m", "atts.evaluate", "--config", str(ROOT / "configs/testbed.yaml"), "--policy",
           "target_only", "--limit", str(LIMIT), "--samples-per-question", str(K), "--output-dir", str(out),
           "--no-progress"]
    for s in ("draft.launch=false", "target.launch=false", f"draft.urls=[{draft_url}]", f"target.urls=[{target_url}]",
              "target.max_concurrency=3", "target.retries=3", "target.backoff_s=0.2"):
        cmd += ["--set", s]
    return cmd


def test_killed_server_stops_the_run_then_rerun_completes_the_rest(testbed, doomed_target, tmp_path):
    url, pid = doomed_target
    out = tmp_path / "run"
    samples = out / "samples"
    proc = subprocess.Popen(_cmd(out, testbed.urls["draft"], url), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(samples.glob("q*.json"))) < LIMIT * K // 3:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    tree = _kill_tree(pid)
    t_kill = time.monotonic()
    try:
        _, err = proc.communicate(timeout=STOP_BOUND_S + 30)
    finally:
        proc.kill()
    stopped_in = time.monotonic() - t_kill
    print(f"run stopped {stopped_in:.1f}s after the kill: {err.strip().splitlines()[-1]}")
    assert proc.returncode == 4, err[-3000:]
    assert stopped_in < STOP_BOUND_S
    assert "target: server" in err and "is down" in err and "rerun" in err and "Traceback" not in err
    assert not [p for p in tree if _pid_alive(p)]

    files = list(samples.iterdir())
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in files), "half-written file left"
    before = {p.name: json.loads(p.read_text()) for p in files}  # all valid JSON
    assert LIMIT * K // 3 <= len(before) < LIMIT * K
    assert all(r["status"] == "done" for r in before.values()), "a sample was failed for the server's death"
    json.loads((out / "manifest.json").read_text())

    # the server "restarted": a new one at another URL (the session's target)
    again = subprocess.run(_cmd(out, testbed.urls["draft"], testbed.urls["target"]), cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    after = {p.name: json.loads(p.read_text()) for p in samples.iterdir()}
    assert len(after) == LIMIT * K == summary["n_samples_completed"]
    assert summary["samples_skipped_as_done"] == len(before)
    assert summary["samples_this_invocation"] == LIMIT * K - len(before)
    for name, rec in before.items():
        assert after[name]["started"] == rec["started"]  # not rerun
