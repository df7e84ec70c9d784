#!/usr/bin/env bash
# LLM re-extraction of every sample's final answer in a run, through an OpenAI-compatible
# API, added beside the original answer (never over it): `python -m atts.reextract -h`.
#   OPENAI_API_KEY=... OPENAI_BASE_URL=... OPENAI_MODEL=... \
#     scripts/re_extract_answer.sh RUN_DIR [--field llm] [--concurrency 8] [--dry-run] [--force] [--judge]
# --judge then has the LLM judge (anyone_check) rate the re-extracted answers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${ATTS_PYTHON:-$ROOT/.venv/bin/python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m atts.reextract "$@"
