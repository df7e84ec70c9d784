"""Policy capabilities are declared by base class (method.policies.base), and calibration
reads them: which policy it rolls out, what a score is, how a proposal is scored."""

import dataclasses

import pytest

from atts.commands.calibrate import _score_kind, calibration_policy, score_of
from atts.config import load_config
from atts.errors import ConfigError
from atts.method.policies import (ATTS, POLICIES, ATTSSelf, DraftOnly, ProposingPolicy, SpecReason,
                                  SpecReasonConformal, make_policy)
from atts.testing.testbed import ROOT


BASE = load_config(ROOT / "configs" / "testbed.yaml")


def cfg_for(name):
    """The testbed config with policy ``name`` and its default params."""
    return dataclasses.replace(BASE, policy=dataclasses.replace(BASE.policy, name=name, params=POLICIES[name].Params()))


def test_capabilities_are_declared_by_base_class():
    proposing = {n for n, c in POLICIES.items() if issubclass(c, ProposingPolicy)}
    assert proposing == {"atts", "atts_self", "atts_self_fork", "specreason", "specreason_conformal"}
    assert not issubclass(DraftOnly, ProposingPolicy) and issubclass(ATTSSelf, ATTS) and issubclass(SpecReason, ProposingPolicy)


def test_calibration_rolls_out_the_policy_or_atts():
    assert type(calibration_policy(cfg_for("atts_self"))) is ATTSSelf
    assert type(calibration_policy(cfg_for("draft_only"))) is ATTS  # no propose/resolve: ATTS's calibration
    assert calibration_policy(cfg_for("atts")).params.pipeline is False  # calibration runs in phases


def test_score_kind_only_for_policies_that_declare_one():
    assert _score_kind(cfg_for("atts")) == {} and _score_kind(cfg_for("draft_only")) == {}
    assert _score_kind(cfg_for("atts_self"))["score"] and _score_kind(cfg_for("specreason_conformal"))["score"]
    assert SpecReasonConformal.calibration_kind(cfg_for("specreason_conformal").policy.params)


def test_default_nonconformity_is_the_scoring_ppl():
    class Prop:
        class scoring:
            ppl = 2.5

    assert score_of(ATTS(cfg_for("atts").policy.params), Prop()) == 2.5


def test_unknown_policy_lists_the_valid_names():
    with pytest.raises(ConfigError, match="valid: atts, atts_self, atts_self_fork, draft_only"):
        make_policy("atts-typo", None)
