#!/usr/bin/env bash
# Stop the servers started by scripts/launch_sglang_servers.sh: SIGTERM each recorded
# process group and its descendants, SIGKILL what is left after a grace period.
#   scripts/stop_sglang_servers.sh [--log-dir results/logs]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT"
exec "$PY" -m atts.cli servers stop "$@"
