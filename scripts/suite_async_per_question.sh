#!/usr/bin/env bash
# ATTS suite: per-question calibration, asynchronous evaluation.
#   scripts/suite_async_per_question.sh [--configs "configs/a.yaml configs/b.yaml"] [-- extra atts run flags]
ATTS_SUITE_SETS="policy.grouping=per_question calibration.split=null" exec "$(dirname "${BASH_SOURCE[0]}")/suite.sh" --tag async_per_question "$@"
