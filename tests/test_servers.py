"""Server lifecycle against real SGLang: the bash scripts, clear failures, no orphans."""

import json
import os
import subprocess

import httpx
import psutil
import pytest

from atts.servers import ServerError, ServerGroup, ServerSpec, _pid_alive
from conftest import MODELS, ROOT

pytestmark = pytest.mark.server


def test_launch_and_stop_scripts_leave_no_process(tmp_path):
    log_dir = tmp_path / "logs"
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/launch_sglang_servers.sh"), "--small-model", str(MODELS / "tiny-draft"),
         "--eval-model", str(MODELS / "tiny-draft"), "--device", "cpu", "--log-dir", str(log_dir)],
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
