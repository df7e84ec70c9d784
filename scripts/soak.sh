#!/usr/bin/env bash
# Soak test: the testbed at high concurrency, through a loopback proxy injecting 10% faults
# (HTTP 500/503, resets, timeouts, truncated and incomplete bodies), for a bounded time.
# Reports samples completed, failures, retries, peak memory and open file descriptors,
# and writes OUTPUT/soak.json. Arguments go to `python -m atts.commands.soak` (see --help):
#   scripts/soak.sh --duration 600 --output results/soak
#   scripts/soak.sh --duration 60 --set draft.launch=false --set 'draft.urls=[http://127.0.0.1:30100]' \
#       --set target.launch=false --set 'target.urls=[http://127.0.0.1:30101]'
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "error: $PY not found; run scripts/install.sh first" >&2; exit 2; }
cd "$ROOT"
exec "$PY" -m atts.commands.soak "$@"
