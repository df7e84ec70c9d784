"""Pure logic of scale-out: the URL balancer, engine selection from the config, and the
OpenAI-compatible engine's parsing of answers (the real-server tests are
test_router_real.py and test_vllm_real.py)."""

import math

import pytest

from atts.engines.balance import Balancer
from atts.config import ConfigError, load_config, with_overrides
from atts.engines.sglang import EngineError, SGLangEngine
from atts.engines.openai import OpenAIEngine, _from_echo, _from_prompt_logprobs, _top_logprobs
from atts.runtime.session import build_roles
from conftest import ROOT


def test_balancer_round_robin_when_idle_and_least_in_flight_when_busy():
    b = Balancer(("a", "b", "c"))
    assert [b.pick() for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    with b.track("a"), b.track("a"), b.track("b"):
        assert {b.pick() for _ in range(5)} == {"c"}
        with b.track("c"):
            assert {b.pick() for _ in range(5)} <= {"b", "c"}
    assert b.in_flight == {"a": 0, "b": 0, "c": 0} and b.sent == {"a": 2, "b": 1, "c": 1}


def test_balancer_skips_failed_endpoint_until_cooled_down():
    b = Balancer(("a", "b"), cooldown_s=60)
    b.failed("a")
    assert {b.pick() for _ in range(4)} == {"b"}
    b.failed("b")  # all down: all eligible again rather than none
    assert {b.pick() for _ in range(4)} == {"a", "b"}
    single = Balancer(("x",))
    single.failed("x")
    assert single.pick() == "x"
    with pytest.raises(ValueError):
        Balancer(())


def test_engine_selected_per_role_from_config(tmp_path):
    cfg = with_overrides(load_config(ROOT / "configs" / "testbed.yaml"), sets=[
        "draft.launch=false", "target.launch=false", "draft.urls=[http://127.0.0.1:1]",
        "target.urls=[http://127.0.0.1:2, http://127.0.0.1:3]", "target.engine=openai"])
    roles = build_roles(cfg, {"draft": list(cfg.draft.urls), "target": list(cfg.target.urls)})
    assert type(roles["draft"].engine) is SGLangEngine
    assert type(roles["target"].engine) is OpenAIEngine
    assert roles["target"].engine.settings.urls == ("http://127.0.0.1:2", "http://127.0.0.1:3")
    with pytest.raises(ConfigError, match="target.engine"):
        with_overrides(cfg, sets=["target.engine=vllm"])
    with pytest.raises(ConfigError, match="launch: true"):
        with_overrides(cfg, sets=["target.launch=true"])


def test_prompt_logprobs_take_exactly_the_chunk_positions():
    ids = [5, 6, 7, 8]  # prefix [5, 6], chunk [7, 8]
    entries = [None, {"6": {"logprob": -0.1}}, {"7": {"logprob": -0.2}, "9": {"logprob": -3.0}},
               {"8": {"logprob": -0.4}}]
    assert _from_prompt_logprobs("t", entries, ids, 2) == [-0.2, -0.4]
    with pytest.raises(EngineError, match="no logprob for token 8"):
        _from_prompt_logprobs("t", entries[:3] + [{"9": {"logprob": -1.0}}], ids, 2)
    with pytest.raises(EngineError, match="expected 4 prompt_logprobs"):
        _from_prompt_logprobs("t", entries[:3], ids, 2)
    with pytest.raises(EngineError):
        _from_prompt_logprobs("t", entries[:3] + [{"8": {"logprob": math.nan}}], ids, 2)


def test_echo_logprobs_checked_against_the_sent_tokens():
    ids = [5, 6, 7]
    choice = {"logprobs": {"token_logprobs": [None, -0.5, -0.25, -1.0],
                           "tokens": ["token_id:5", "token_id:6", "token_id:7", "token_id:2"]}}
    assert _from_echo("t", choice, ids, 1) == [-0.5, -0.25]
    choice["logprobs"]["tokens"][2] = "token_id:9"
    with pytest.raises(EngineError, match="echoed token 9 != 7"):
        _from_echo("t", choice, ids, 1)
    choice["logprobs"]["tokens"] = ["a", "b", "c", "d"]  # text tokens: positions alone
    assert _from_echo("t", choice, ids, 2) == [-0.25]
    with pytest.raises(EngineError, match="expected >= 3"):
        _from_echo("t", {"logprobs": {"token_logprobs": [None, -0.5]}}, ids, 1)


def test_top_logprobs_keys_become_token_ids():
    choice = {"logprobs": {"top_logprobs": [{"token_id:3": -0.1, "token_id:4": -2.5}, {"token_id:7": 0.0}]}}
    assert _top_logprobs("t", choice, 2) == [[(-0.1, 3, ""), (-2.5, 4, "")], [(0.0, 7, "")]]
    with pytest.raises(EngineError, match="expected 3 top_logprobs"):
        _top_logprobs("t", choice, 3)
    with pytest.raises(EngineError, match="key 'x'"):
        _top_logprobs("t", {"logprobs": {"top_logprobs": [{"x": -1.0}]}}, 1)
