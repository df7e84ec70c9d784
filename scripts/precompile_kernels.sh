#!/usr/bin/env bash
# GPU machines only: FlashInfer JIT-compiles its kernels on first use, which takes
# minutes (or hangs when the system nvcc and torch's CUDA runtime disagree). Run this
# once after scripts/install.sh so that the first real run starts promptly.
#   scripts/precompile_kernels.sh [MODEL]   (default: the draft of configs/math500_r1llama8b_qwq32b.yaml)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${1:-deepseek-ai/DeepSeek-R1-Distill-Llama-8B}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "precompile_kernels.sh: no CUDA GPU found; nothing to do (the CPU path uses torch_native attention)"
  exit 0
fi
echo "nvcc: $(command -v nvcc || echo none); torch CUDA: $("$PY" -c 'import torch; print(torch.version.cuda)')"
"$PY" -c "import flashinfer; print('flashinfer', flashinfer.__version__)"
# A short real server start and one request compiles the prefill/decode kernels for this
# model's head configuration into FlashInfer's JIT cache (~/.cache/flashinfer).
LOG_DIR="$ROOT/results/logs/precompile"
urls=$("$PY" -m atts.cli servers start --draft-model "$MODEL" --target-model "$MODEL" --device cuda \
        --draft-gpus 0 --target-gpus 0 --mem-fraction-static 0.4 --log-dir "$LOG_DIR" --timeout 1800)
trap '"$PY" -m atts.cli servers stop --log-dir "$LOG_DIR"' EXIT
for u in $urls; do
  curl -sf "$u/generate" -H 'Content-Type: application/json' \
    -d '{"text": "1 + 1 =", "sampling_params": {"max_new_tokens": 8}}' >/dev/null
  echo "warmed $u"
done
