"""Servers die with the process that launched them (atts.serving.watchdog), shown with a
dummy "server" (atts.testing.dummy_server): a python process with a child in its group
(like SGLang's scheduler) and one that escaped into its own session. No SGLang here;
tests/server/test_stop_real.py has the real ones."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atts.serving import sglang as serving
from atts.serving.stale import cmdline
from atts.testing.dummy_server import DummySpec

ROOT = Path(__file__).resolve().parents[2]

def _alive(pid: int) -> bool:
    return cmdline(pid) is not None


def _wait_gone(pids, timeout=20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _server_pids(log: Path, timeout=20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [l for l in log.read_text().splitlines() if l and l.split()[0].isdigit()] if log.exists() else []
        if lines:
            return [int(x) for x in lines[0].split()]
        time.sleep(0.1)
    raise AssertionError(f"dummy server never started: {log.read_text() if log.exists() else '(no log)'}")


def _kill(pids):
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


# a stand-in for atts: launches the dummy server tied (or detached), records it, waits
LAUNCHER = r"""
import sys, time
from pathlib import Path
from atts.testing.dummy_server import DummySpec
from atts.serving.sglang import start_server, write_records
log_dir = Path(sys.argv[1])
s = start_server(DummySpec("target"), log_dir, detached=sys.argv[2] == "detached")
write_records([s], log_dir)
print(s.pid, flush=True)
time.sleep(300)
"""


def _launch(tmp_path: Path, mode: str) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path), mode], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return p, int(p.stdout.readline())


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM-unhandled"])
def test_tree_dies_when_the_launcher_dies_however(tmp_path, how):
    atts, top = _launch(tmp_path, "tied")
    tree = [top] + _server_pids(tmp_path / "target.log")  # watchdog, server, child, escaped child
    assert all(_alive(p) for p in tree)
    atts.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)  # no handler here: dies at once
    atts.wait(10)
    try:
        assert _wait_gone(tree, timeout=20) == [], "processes of the launched tree outlived their launcher"
    finally:
        _kill(tree)
    assert "atts is gone" in (tmp_path / "target.log").read_text()


def test_detached_server_outlives_its_launcher(tmp_path):
    atts, top = _launch(tmp_path, "detached")
    tree = [top] + _server_pids(tmp_path / "target.log")[1:]
    try:
        atts.send_signal(signal.SIGKILL)
        atts.wait(10)
        time.sleep(1.5)
        assert all(_alive(p) for p in tree), "a detached server must outlive the shell that started it"
        rec = json.loads((tmp_path / "servers.json").read_text())["target"]
        assert rec["detached"] is True and rec["cmdline"] == cmdline(top)
    finally:
        serving.stop_pid_tree(top, grace=2)
        _kill(tree)


def test_stop_servers_stops_the_whole_tree_and_unties(tmp_path):
    s = serving.start_server(DummySpec("draft"), tmp_path)
    tree = [s.pid] + _server_pids(tmp_path / "draft.log")
    try:
        assert s.tie is not None and s.record()["detached"] is False
        t0 = time.monotonic()
        serving.stop_servers([s])
        assert _wait_gone(tree, timeout=5) == [] and time.monotonic() - t0 < 20
        assert s.tie is None
    finally:
        _kill(tree)


def test_watchdog_exits_with_the_servers_status(tmp_path):
    from atts.serving import watchdog

    r, w = os.pipe()
    p = subprocess.run(watchdog.command([sys.executable, "-c", "import sys; sys.exit(7)"], r, 1.0),
                       pass_fds=(r,), timeout=30, start_new_session=True)
    os.close(r)
    os.close(w)
    assert p.returncode == 7
