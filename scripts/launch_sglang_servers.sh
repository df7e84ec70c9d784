#!/usr/bin/env bash
# Start the draft and target SGLang servers in the background, wait until both answer
# /health, print one URL per line (draft first, then target) and return.
#
#   scripts/launch_sglang_servers.sh --config configs/testbed.yaml
#   scripts/launch_sglang_servers.sh --draft-model deepseek-ai/DeepSeek-R1-Distill-Llama-8B \
#       --target-model Qwen/QwQ-32B --draft-gpus 0 --target-gpus 1,2 --target-tp 2 \
#       --mem-fraction-static 0.9 --draft-port 40000 --target-port 40001
#
# The research code's names are accepted too: --small-model/--eval-model,
# --small-gpus/--eval-gpus, --small-tp/--eval-tp, --small-port/--eval-port,
# --mem-fraction. Servers bind 127.0.0.1 unless --host says otherwise. Logs, PID files
# and servers.json go to --log-dir (default results/logs). Stop them with
# scripts/stop_sglang_servers.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "error: $PY not found; run scripts/install.sh first" >&2; exit 2; }

args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --small-model|--small-model-path) args+=(--draft-model "$2"); shift 2 ;;
    --eval-model|--eval-model-path)   args+=(--target-model "$2"); shift 2 ;;
    --small-gpus)  args+=(--draft-gpus "$2"); shift 2 ;;
    --eval-gpus)   args+=(--target-gpus "$2"); shift 2 ;;
    --small-tp)    args+=(--draft-tp "$2"); shift 2 ;;
    --eval-tp)     args+=(--target-tp "$2"); shift 2 ;;
    --small-port)  args+=(--draft-port "$2"); shift 2 ;;
    --eval-port)   args+=(--target-port "$2"); shift 2 ;;
    --mem-fraction) args+=(--mem-fraction-static "$2"); shift 2 ;;
    -h|--help) exec "$PY" -m atts.cli servers start --help ;;
    *) args+=("$1"); shift ;;
  esac
done
cd "$ROOT"
exec "$PY" -m atts.cli servers start "${args[@]}"
