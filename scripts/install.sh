#!/usr/bin/env bash
# Creates .venv in the repository root with torch, the orchestrator's requirements,
# SGLang and atts itself. Idempotent: a second run on an installed tree checks a stamp
# and returns in seconds.
#
#   CUDA machine: torch from PyPI and the normal pinned `sglang==0.5.23` install.
#   CPU machine:  torch 2.13.0+cpu, sglang installed --no-deps with its dependencies minus
#                 the CUDA-only ones (third_party/sglang-cpu-deps.txt), our sgl_kernel CPU
#                 shim and torchvision import stub (third_party/), everything pinned by
#                 requirements-lock-cpu.txt.
#
# Environment: ATTS_VENV (default .venv), ATTS_DEVICE=cpu|cuda (default: detected),
#              PYTHON (default python3), ATTS_TORCH_CPU_INDEX (PyTorch's CPU wheel index,
#              used when torch==2.13.0+cpu is not already reachable from pip's indexes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATTS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
SGLANG_VERSION="0.5.23"
TORCH_VERSION="2.13.0"
TORCH_CPU_INDEX="${ATTS_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

if [[ -z "${ATTS_DEVICE:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    ATTS_DEVICE=cuda
  else
    ATTS_DEVICE=cpu
  fi
fi

inputs_hash() {
  (cd "$ROOT" && cat scripts/install.sh requirements.txt requirements-lock-cpu.txt \
     third_party/sglang-cpu-deps.txt pyproject.toml 2>/dev/null
   # the sources only: pip's in-tree build/ output (untracked) must not change the hash
   cd "$ROOT" && find third_party -name build -prune -o -type f \( -name '*.py' -o -name 'pyproject.toml' \) -print \
     | sort | xargs cat
   echo "$ATTS_DEVICE") | sha256sum | cut -d' ' -f1
}
STAMP="$VENV/.atts-install-stamp"
WANT="$(inputs_hash)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c "import atts, sglang" 2>/dev/null; then
  echo "install.sh: $VENV is up to date ($ATTS_DEVICE)"
  exit 0
fi

echo "install.sh: installing into $VENV for $ATTS_DEVICE"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" "setuptools>=70" wheel

if [[ "$ATTS_DEVICE" == "cuda" ]]; then
  "${PIP[@]}" install "torch==2.14.1"
  "${PIP[@]}" install "sglang==$SGLANG_VERSION" -r "$ROOT/requirements.txt"
else
  # torch first, so nothing pulls multi-GB CUDA wheels. A local or mirrored
  # 2.13.0+cpu wheel is used when pip can see one; otherwise PyTorch's CPU index.
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '$TORCH_VERSION+cpu')" 2>/dev/null; then
    "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
      || "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu" --index-url "$TORCH_CPU_INDEX"
  fi
  CONSTRAINTS=(-c "$ROOT/requirements-lock-cpu.txt")
  [[ -f "$ROOT/requirements-lock-cpu.txt" ]] || CONSTRAINTS=()
  # The stubs go in before the dependencies, so that timm's `torchvision` requirement is
  # met by the stub and pip never fetches the CUDA torchvision wheel.
  "${PIP[@]}" install -q --no-deps --no-build-isolation \
    "$ROOT/third_party/sgl_kernel_cpu" "$ROOT/third_party/torchvision_stub"
  "${PIP[@]}" install -q "${CONSTRAINTS[@]}" \
    -r "$ROOT/third_party/sglang-cpu-deps.txt" -r "$ROOT/requirements.txt" "torch==$TORCH_VERSION+cpu"
  "${PIP[@]}" install -q --no-deps "sglang==$SGLANG_VERSION"
fi
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

"$VENV/bin/python" -c "import atts, sglang, torch; print('install.sh: ok: torch', torch.__version__, 'sglang', sglang.__version__)"
echo "$WANT" > "$STAMP"
