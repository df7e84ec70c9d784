#!/usr/bin/env bash
# ATTS suite: per-turn sequential calibration, so the takeover rate holds at every turn.
#   scripts/suite_async.sh [--configs "configs/a.yaml configs/b.yaml"] [-- extra atts run flags]
ATTS_SUITE_SETS="policy.grouping=per_turn" exec "$(dirname "${BASH_SOURCE[0]}")/suite.sh" --tag async "$@"
