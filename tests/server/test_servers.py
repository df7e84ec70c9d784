"""Server lifecycle against real SGLang: the bash scripts, clear failures, no orphans."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from atts.serving.sglang import ServerError, ServerGroup, ServerSpec, _pid_alive
from atts.testing.testbed import FAKE_SECRETS, assert_no_secret
from conftest import MODELS, ROOT

pytestmark = pytest.mark.server


def test_launch_and_stop_scripts_leave_no_process(tmp_path):
    log_dir = tmp_path / "logs"
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/launch_sglang_servers.sh"), "--small-model", str(MODELS / "chain-draft"),
         "--eval-model", str(MODELS / "chain-draft"), "--device", "cpu", "--log-dir", str(log_dir)],
        capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    urls = out.stdout.split()
    assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
    rec = json.loads((log_dir / "servers.json").read_text())
    pids = [rec["draft"]["pid"], rec["target"]["pid"]]
    tree = pids + [c.pid for p in pids for c in psutil.Process(p).children(recursive=True)]
    assert len(tree) > 2  # sglang runs scheduler and detokenizer subprocesses
    for u in urls:
        assert httpx.get(u + "/health", timeout=5).status_code == 200
    stop = subprocess.run(["bash", str(ROOT / "scripts/stop_sglang_servers.sh"), "--log-dir", str(log_dir)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert stop.returncode == 0, stop.stderr
    assert not [p for p in tree if _pid_alive(p)], "orphan server processes"
    assert not list(log_dir.glob("*.pid"))


def test_server_that_dies_fails_clearly_with_log_tail(tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    with pytest.raises(ServerError, match="exited during start-up") as e:
        with ServerGroup([ServerSpec("draft", str(bad))], tmp_path / "logs", timeout=120):
            pass
    assert "log" in str(e.value)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_servers_atts_launched(tmp_path, sig):
    """`atts run` with `launch: true`: OUTPUT_DIR/servers.json gives each role's pid and
    url; Ctrl-C (or SIGTERM) mid-run stops cleanly, exit 130 (143), and no server process of its
    tree survives. Fake API keys in its environment appear in none of its files."""

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "atts.cli", "run", "--config", str(ROOT / "configs/testbed.yaml"), "--policy",
         "draft_only", "--output-dir", str(out), "--limit", "100", "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **FAKE_SECRETS},
        # SIGINT at its default whatever pytest inherited (`cmd &` from a script ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    tree: list[int] = []
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        if (out / "samples").is_dir() and list((out / "samples").glob("*.json")):
            rec = json.loads((out / "servers.json").read_text())
            for role in ("draft", "target"):
                pid = rec[role]["pid"]
                assert rec[role]["url"].startswith("http://127.0.0.1:") and _pid_alive(pid)
                assert httpx.get(rec[role]["url"] + "/health", timeout=10).status_code == 200
                tree += [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
            break
        time.sleep(0.2)
    assert tree, "run never started sampling"
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    log = proc.stdout.read()
    assert rc == 128 + sig, log[-3000:]  # 130 SIGINT, 143 SIGTERM
    assert ("interrupted" if sig == signal.SIGINT else "terminated (SIGTERM)") in log and "Traceback" not in log
    assert not [p for p in tree if _pid_alive(p)], "orphan server processes"
    assert_no_secret(out, log)
