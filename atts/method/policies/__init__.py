"""Policies: how a turn composes the draft and the target. One small class each, over
the shared machinery of `atts.runtime.runner.SampleContext`:

- `base`: `Policy` (``Params``, ``turn(ctx)``, ``needs_calibration``) and `ProposingPolicy`
  (``propose`` / ``resolve`` / ``nonconformity`` / ``calibration_kind``), shared helpers;
- `atts`: ATTS (the conformal takeover rule) and ATTSSelf;
- `fork`: ATTSSelfFork (the research code's self_reject_fork: a failing sample continues
  from its best peer's history);
- `baselines`: draft_only, target_only, random_takeover, random_switch, sync_ranked;
- `specreason`, `spec_thinking`: the judge-based and cue-word baselines;
- `registry`: ``POLICIES`` by config name and ``make_policy``.
"""

from atts.method.policies.base import AlphaParams, NoParams, Policy, ProposingPolicy, coin, rule, target_writes
from atts.method.policies.atts import ATTS, ATTSParams, ATTSSelf, ATTSSelfParams, PreDraft, Proposal
from atts.method.policies.fork import ATTSSelfFork, ATTSSelfForkParams, fork_score
from atts.method.policies.baselines import (
    DraftOnly, RandomSwitch, RandomSwitchParams, RandomTakeover, SyncRanked, SyncRankedParams, TargetOnly,
    budget)
from atts.method.policies.specreason import (
    JUDGE_INSTRUCTION, JUDGE_PREFILL, JudgeParams, Judged, SpecReason, SpecReasonConformal,
    SpecReasonConformalParams, SpecReasonParams, judge_score)
from atts.method.policies.spec_thinking import SpecThinking, SpecThinkingParams, classify_lookahead
from atts.method.policies.registry import POLICIES, make_policy, policy_class

__all__ = [
    "ATTS", "ATTSParams", "ATTSSelf", "ATTSSelfFork", "ATTSSelfForkParams", "ATTSSelfParams", "AlphaParams", "DraftOnly", "JUDGE_INSTRUCTION",
    "JUDGE_PREFILL", "JudgeParams", "Judged", "NoParams", "POLICIES", "Policy", "PreDraft", "Proposal",
    "ProposingPolicy", "RandomSwitch", "RandomSwitchParams", "RandomTakeover", "SpecReason",
    "SpecReasonConformal", "SpecReasonConformalParams", "SpecReasonParams", "SpecThinking",
    "SpecThinkingParams", "SyncRanked", "SyncRankedParams", "TargetOnly", "budget", "classify_lookahead",
    "coin", "fork_score", "judge_score", "make_policy", "policy_class", "rule", "target_writes"]
