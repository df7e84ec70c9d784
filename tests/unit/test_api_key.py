"""Issue 13 item 9: servers behind an API key. Per role, `api_key_env` names the
environment variable holding the key; both engines send it as `Authorization: Bearer`
on every request; a server that refuses says what to set; `served_model_name` is the
OpenAI-compatible `model`. No SGLang: an in-process stub on 127.0.0.1
(atts/testing/stub_server.py). The "never written" half is in tests/test_security.py."""

from __future__ import annotations

import asyncio

import pytest

from atts.config import ConfigError, load_config, with_overrides
from atts.engines.sglang import EngineError, EngineSettings, SGLangEngine
from atts.commands.evaluate import run_hash
from atts.engines.openai import OpenAIEngine
from atts.testing.stub_server import StubServer
from conftest import ROOT

KEY = "stub-FAKE-" + "key-5e1d"  # built from two literals: no key-like string in the tree
ENV = "ATTS_TEST_SERVER_KEY"


def _ops(engine) -> None:
    async def go():
        async with engine:
            await engine.model_info()
            g = await engine.generate([7, 8, 9], max_new_tokens=5)
            s = await engine.score([7, 8, 9], [10, 11])
            return g, s

    return asyncio.run(go())


@pytest.mark.parametrize("engine_cls", [SGLangEngine, OpenAIEngine])
def test_the_key_is_sent_on_every_request(engine_cls, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    with StubServer(api_key=KEY) as stub:
        g, s = _ops(engine_cls("target", EngineSettings((stub.url,), retries=0, api_key_env=ENV)))
        assert g.text.endswith("\\boxed{2}.") and len(s.logprobs) == 2
        assert stub.requests and all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in stub.requests)


@pytest.mark.parametrize("engine_cls", [SGLangEngine, OpenAIEngine])
def test_a_server_that_wants_a_key_says_what_to_set(engine_cls):
    with StubServer(api_key=KEY) as stub:
        eng = engine_cls("draft", EngineSettings((stub.url,), retries=3, backoff_s=0))
        with pytest.raises(EngineError, match=r"HTTP 401.*draft\.api_key_env"):
            _ops(eng)
        assert len(stub.requests) == 1  # refused once, not retried
        assert all("Authorization" not in r["headers"] for r in stub.requests)


def test_no_key_no_header(monkeypatch):
    with StubServer() as stub:
        _ops(SGLangEngine("draft", EngineSettings((stub.url,), retries=0)))
        assert all("Authorization" not in r["headers"] for r in stub.requests)


def test_an_unset_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with StubServer() as stub:
        with pytest.raises(EngineError, match=f"{ENV} is not set"):
            _ops(SGLangEngine("draft", EngineSettings((stub.url,), api_key_env=ENV)))


def test_served_model_name_is_the_requests_model(monkeypatch):
    with StubServer(served=("base", "my-lora")) as stub:
        _ops(OpenAIEngine("target", EngineSettings((stub.url,), retries=0), model="my-lora"))
        posts = [r["body"] for r in stub.requests if r["body"] is not None]
        assert posts and all(b["model"] == "my-lora" for b in posts)
        with pytest.raises(EngineError, match="does not serve the model 'other'.*base, my-lora"):
            _ops(OpenAIEngine("target", EngineSettings((stub.url,), retries=0), model="other"))


def _cfg(*sets):
    return with_overrides(load_config(ROOT / "configs" / "testbed.yaml"),
                          sets=["draft.launch=false", "target.launch=false", "draft.urls=[http://127.0.0.1:1]",
                                "target.urls=[http://127.0.0.1:2]", *sets])


def test_config_fields_validated_and_kept_out_of_identity_and_manifest():
    plain = _cfg()
    keyed = _cfg(f"draft.api_key_env={ENV}", f"target.api_key_env={ENV}", "target.engine=openai",
                 "target.served_model_name=qwq")
    assert keyed.draft.api_key_env == ENV and keyed.target.served_model_name == "qwq"
    assert run_hash(keyed, None) == run_hash(_cfg("target.engine=openai"), None) == run_hash(plain, None)
    public = keyed.to_dict(public=True)
    assert "api_key_env" not in public["draft"] and "api_key_env" not in public["target"]
    assert keyed.to_dict()["draft"]["api_key_env"] == ENV  # --set round trips keep it
    with pytest.raises(ConfigError, match="draft.api_key_env: the name of an environment variable"):
        _cfg(f"draft.api_key_env={KEY}")
    with pytest.raises(ConfigError, match="served_model_name: only for `engine: openai`"):
        _cfg("draft.served_model_name=x")
