#!/usr/bin/env bash
# Run calibrate + evaluate for each config in a list, one after another. Each run
# starts its servers (configs with `launch: true`), runs, and stops them.
#   scripts/suite.sh [--configs "a.yaml b.yaml"] [--tag NAME] [-- extra `atts run` flags]
# ATTS_SUITE_SETS="key=value ..." adds `--set key=value` config overrides.
# The named suites (suite_conformal.sh, suite_async.sh and their *_per_question.sh
# variants) call this with their settings. Results: <output_dir of each config>/<tag>.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ATTS="${ATTS_BIN:-$ROOT/.venv/bin/atts}"
CONFIGS="${ATTS_SUITE_CONFIGS:-configs/testbed.yaml}"
TAG="suite"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --configs) CONFIGS="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
cd "$ROOT"
status=0
for kv in ${ATTS_SUITE_SETS:-}; do extra+=(--set "$kv"); done
for cfg in $CONFIGS; do
  out_base="$("$ROOT/.venv/bin/python" -c 'import sys; from atts.config import load_config; print(load_config(sys.argv[1]).output_dir)' "$cfg")"
  out="$out_base/$TAG"
  echo "=== $cfg -> $out"
  if ! "$ATTS" run --config "$cfg" --output-dir "$out" --calibration "$out/calibration.json" "${extra[@]}"; then
    echo "!!! $cfg failed" >&2
    status=1
  fi
done
exit "$status"
