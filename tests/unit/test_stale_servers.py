"""Stale servers (atts.serving.stale): records of a previous launch that name live
processes running the recorded command are reported in one line and stopped at the next
launch into the same place, or by ``atts servers stop``; a reused pid (another command)
is left alone. Dummy processes stand in for servers."""

import json
import os
import signal
import subprocess
import sys
import time

from atts import cli
from atts.serving import sglang as serving
from atts.serving.stale import cmdline, find_stale, start_ticks
from atts.testing.dummy_server import DummySpec


def _dummy(tmp_path, role="target", marker="sglang.launch_server"):
    """A process whose command line looks like a server, recorded as a previous run would."""
    argv = [sys.executable, "-c", "import time; time.sleep(300)", marker]
    p = subprocess.Popen(argv, start_new_session=True)
    deadline = time.monotonic() + 10
    while cmdline(p.pid) != argv and time.monotonic() < deadline:
        time.sleep(0.05)
    return p, argv


def _record(log_dir, role, pid, argv, detached=False, start=None):
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "servers.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[role] = {"role": role, "pid": pid, "url": "http://127.0.0.1:1", "cmdline": argv, "detached": detached}
    if start is not None:
        doc[role]["start_ticks"] = start
    path.write_text(json.dumps(doc))
    (log_dir / f"{role}.pid").write_text(f"{pid}\n")


def _gone(p) -> bool:
    try:
        p.wait(10)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        return False


def test_next_launch_reports_and_stops_a_stale_server(tmp_path, capsys):
    log_dir = tmp_path / "logs"
    p, argv = _dummy(tmp_path)
    _record(log_dir, "target", p.pid, argv)
    stopped = serving.stop_stale(log_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert [s.pid for s in stopped] == [p.pid] and _gone(p)
    assert len(err) == 1 and f"target pid {p.pid}" in err[0] and "still running" in err[0]
    assert not (log_dir / "target.pid").exists()


def test_server_group_stops_stale_servers_before_it_starts(tmp_path, capsys):
    log_dir = tmp_path / "logs"
    p, argv = _dummy(tmp_path)
    _record(log_dir, "draft", p.pid, argv)
    group = serving.ServerGroup([DummySpec("draft")], log_dir, timeout=0.1)
    try:
        group.__enter__()  # the dummy never answers /health: the start fails after the stale stop
    except serving.ServerError:
        pass
    assert _gone(p) and f"draft pid {p.pid}" in capsys.readouterr().err


def test_reused_pid_running_another_command_is_left_alone(tmp_path):
    log_dir = tmp_path / "logs"
    p, argv = _dummy(tmp_path)
    try:
        _record(log_dir, "target", p.pid, argv[:-1] + ["something-else"])
        assert find_stale(log_dir) == []
        _record(log_dir, "target", p.pid, argv, start=start_ticks(p.pid) - 1)  # same pid, started earlier
        assert find_stale(log_dir) == []
        _record(log_dir, "target", p.pid, ["retitled"], start=start_ticks(p.pid))  # the very process
        assert [s.pid for s in find_stale(log_dir)] == [p.pid]
        (log_dir / "servers.json").unlink()  # a bare PID file: matched by what the command runs
        assert [s.pid for s in find_stale(log_dir)] == [p.pid]
    finally:
        p.kill()
        p.wait()


def test_detached_servers_are_reported_not_stopped_by_a_run(tmp_path, capsys):
    log_dir = tmp_path / "logs"
    p, argv = _dummy(tmp_path)
    try:
        _record(log_dir, "target", p.pid, argv, detached=True)
        assert serving.stop_stale(log_dir) == []
        assert p.poll() is None and "atts servers stop --log-dir" in capsys.readouterr().err
        assert cli.main(["servers", "start", "--log-dir", str(log_dir), "--draft-model", "x", "--target-model", "y"]) == 2
        assert cli.main(["servers", "stop", "--log-dir", str(log_dir)]) == 0  # on demand: stopped
        assert _gone(p) and not list(log_dir.glob("*.pid"))
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
