"""The engine contract and the shared transport (issue 11; issue 16: the
OpenAI-compatible engine retries malformed responses like the SGLang one). No server:
the in-process stub of atts/testing/stub_server.py."""

from __future__ import annotations

import asyncio

import pytest

from atts.engines import base
from atts.engines.openai import OpenAIEngine
from atts.engines.sglang import EngineError, EngineSettings, Generation, SGLangEngine
from atts.engines.transport import Transport
from atts.testing.stub_server import StubServer

ENGINES = [SGLangEngine, OpenAIEngine]


def _score(engine, prefix=(7, 8, 9), chunk=(10, 11)):
    async def go():
        async with engine:
            return await engine.score(list(prefix), list(chunk))

    return asyncio.run(go())


@pytest.mark.parametrize("engine_cls", ENGINES)
def test_a_malformed_score_answer_is_retried_then_used_once_right(engine_cls):
    with StubServer(malformed_scores=1) as stub:
        eng = engine_cls("target", EngineSettings((stub.url,), retries=2, backoff_s=0))
        s = _score(eng)
        assert s.logprobs == [-0.1, -0.1]
        assert s.stats.attempts == 2  # the malformed answer, then the good one
        assert eng.counters["retries"] == 1 and eng.counters["failures"] == 0
        assert stub.malformed_scores == 0


@pytest.mark.parametrize("engine_cls", ENGINES)
def test_malformed_answers_exhaust_the_retries_into_an_error(engine_cls):
    with StubServer(malformed_scores=10) as stub:
        eng = engine_cls("target", EngineSettings((stub.url,), retries=1, backoff_s=0))
        with pytest.raises(EngineError, match="gave up after 2 attempts: malformed"):
            _score(eng)
        assert eng.counters["failures"] == 1


@pytest.mark.parametrize("engine_cls", ENGINES)
def test_engines_are_siblings_over_one_transport(engine_cls):
    eng = engine_cls("draft", EngineSettings(("http://127.0.0.1:1",)))
    assert isinstance(eng, base.Engine)
    assert isinstance(eng._transport, Transport) and eng.counters is eng._transport.counters
    assert not issubclass(OpenAIEngine, SGLangEngine)
    with pytest.raises(ValueError, match="no server URL"):
        engine_cls("draft", EngineSettings(()))


def test_contract_names_stay_importable_from_the_old_module():
    assert Generation is base.Generation
