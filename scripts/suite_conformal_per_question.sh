#!/usr/bin/env bash
# ATTS suite: calibrated per question on the evaluated questions (the paper's conditional setting).
#   scripts/suite_conformal_per_question.sh [--configs "configs/a.yaml configs/b.yaml"] [-- extra atts run flags]
ATTS_SUITE_SETS="policy.grouping=per_question calibration.split=null" exec "$(dirname "${BASH_SOURCE[0]}")/suite.sh" --tag conformal_per_question "$@"
