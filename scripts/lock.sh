#!/usr/bin/env bash
# Regenerate the lock files that scripts/install.sh applies as pip constraints.
#
#   scripts/lock.sh cpu    requirements-lock-cpu.txt: pip freeze of the .venv that
#                          scripts/install.sh made on a CPU machine (installed and tested)
#   scripts/lock.sh cuda   requirements-lock-cuda.txt: what pip's resolver picks for
#                          pyproject.toml's dependencies and the server, report and test
#                          extras on CPython 3.11, manylinux_2_34 x86_64 (a dry run: package
#                          metadata only, nothing installed, no GPU needed; needs the index)
#
# Environment: PYTHON (cuda: the interpreter whose pip resolves, default python3; pip >= 23).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

lock_cpu() {
  { echo "# Exact versions CI tested on CPU machines (pip freeze of .venv made by scripts/install.sh),"
    echo "# applied as constraints by scripts/install.sh. torch, sglang and our third_party shims are"
    echo "# pinned by install.sh itself. Regenerate: scripts/lock.sh cpu"
    "$ROOT/.venv/bin/python" -m pip freeze --exclude-editable \
      | grep -v -E "^(atts|atts-runtime|atts_runtime|sgl-kernel|sgl_kernel|torchvision|torch|sglang)(==| @)"; } \
    > "$ROOT/requirements-lock-cpu.txt"
}

lock_cuda() {
  local work platforms=() m
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  # The project's requirements, read from pyproject.toml (base plus the extras install.sh uses).
  "$PYTHON" - "$ROOT/pyproject.toml" > "$work/requirements.txt" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + extras["server"] + extras["report"] + extras["test"]))
EOF
  # pip takes --platform literally: list every manylinux tag a glibc 2.34 machine accepts.
  for m in $(seq 34 -1 5); do platforms+=(--platform "manylinux_2_${m}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
  "$PYTHON" -m pip install --disable-pip-version-check --quiet --dry-run --ignore-installed \
    --report "$work/report.json" --python-version 3.11 --implementation cp "${platforms[@]}" \
    --only-binary=:all: -r "$work/requirements.txt"
  { echo "# Exact versions for CUDA machines, applied as constraints by scripts/install.sh. Resolved,"
    echo "# not installed: pip's resolver (dry run, package metadata only) for pyproject.toml's"
    echo "# dependencies and its server, report and test extras on CPython 3.11, manylinux_2_34"
    echo "# x86_64; torch is the one sglang pins. Regenerate: scripts/lock.sh cuda"
    "$PYTHON" - "$work/report.json" <<'EOF'
import json, sys
skip = {"pip", "setuptools", "wheel"}  # the installer's own tools, as pip freeze leaves them out
pins = {(d["metadata"]["name"], d["metadata"]["version"]) for d in json.load(open(sys.argv[1]))["install"]}
for name, version in sorted(pins, key=lambda p: p[0].lower()):
    if name.lower() not in skip:
        print(f"{name}=={version}")
EOF
  } > "$ROOT/requirements-lock-cuda.txt"
}

case "${1:-}" in
  cpu) lock_cpu ;;
  cuda) lock_cuda ;;
  *) echo "usage: scripts/lock.sh cpu|cuda" >&2; exit 2 ;;
esac
