#!/usr/bin/env bash
# ATTS suite: calibrated on the calibration split, pooled (the paper's marginal conformal test).
#   scripts/suite_conformal.sh [--configs "configs/a.yaml configs/b.yaml"] [-- extra atts run flags]
ATTS_SUITE_SETS="policy.grouping=marginal" exec "$(dirname "${BASH_SOURCE[0]}")/suite.sh" --tag conformal "$@"
