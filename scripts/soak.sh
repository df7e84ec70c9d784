#!/usr/bin/env bash
# Soak test: the testbed with 512 samples in flight (128 questions x 4 per round), through a
# loopback proxy injecting 10% faults on both roles (HTTP 500/503, resets, timeouts,
# truncated and incomplete bodies), for a bounded time; when it launched the servers itself,
# one kill -9 of the target and one of the draft, each restarted. Reports samples completed,
# failed, duplicated and lost (exit 1 unless both 0), retries, throughput (against a
# fault-free phase of the same length with --baseline), peak memory and open file
# descriptors, event-loop lag; writes OUTPUT/soak.json. Arguments go to
# `python -m atts.commands.soak` (see --help). The 10-minute run of docs/reliability.md:
#   scripts/soak.sh --duration 600 --baseline --output results/soak
#   scripts/soak.sh --duration 60 --set draft.launch=false --set 'draft.urls=[http://127.0.0.1:30100]' \
#       --set target.launch=false --set 'target.urls=[http://127.0.0.1:30101]'
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "error: $PY not found; run scripts/install.sh first" >&2; exit 2; }
cd "$ROOT"
exec "$PY" -m atts.commands.soak "$@"
