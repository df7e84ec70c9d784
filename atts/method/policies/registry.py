"""The policies by config name; ``make_policy`` builds one (an unknown name is a
ConfigError that lists the valid ones)."""

from __future__ import annotations

from atts.errors import ConfigError
from atts.method.conformal import ConformalGate
from atts.method.policies.atts import ATTS, ATTSSelf
from atts.method.policies.base import Policy
from atts.method.policies.fork import ATTSSelfFork
from atts.method.policies.baselines import DraftOnly, RandomSwitch, RandomTakeover, SyncRanked, TargetOnly
from atts.method.policies.spec_thinking import SpecThinking
from atts.method.policies.specreason import SpecReason, SpecReasonConformal

POLICIES: dict[str, type[Policy]] = {p.name: p for p in (
    DraftOnly, TargetOnly, ATTS, ATTSSelf, ATTSSelfFork, SyncRanked, RandomTakeover, SpecReason, SpecReasonConformal, SpecThinking,
    RandomSwitch)}


def policy_class(name: str) -> type[Policy]:
    try:
        return POLICIES[name]
    except KeyError:
        raise ConfigError(f"policy.name: unknown policy {name!r}; valid: {', '.join(sorted(POLICIES))}") from None


def make_policy(name: str, params, gate: ConformalGate | None = None) -> Policy:
    return policy_class(name)(params, gate)
