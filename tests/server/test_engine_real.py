"""The engine client against the real SGLang testbed servers."""

import asyncio

import httpx
import pytest
import torch

from atts.tasks import reasoning
from atts.tasks.datasets import Question
from atts.engines.sglang import EngineSettings, SGLangEngine
from atts.tasks.prompts import Prompter
from conftest import MODELS

pytestmark = pytest.mark.server


PARA = reasoning.PARAGRAPH


def engine(url, role="draft"):
    return SGLangEngine(role, EngineSettings((url,), max_concurrency=8, timeout_s=60))


def prompt(p: Prompter, text: str) -> list[int]:
    return p.prompt_ids(Question(0, "x", text, "0", "chain"))


def test_generation_max_tokens_stop_and_temperature(testbed):
    pr = Prompter(str(MODELS / "chain-target"))
    ids = prompt(pr, reasoning.generate("test", 1)[0].problem)

    async def go():
        async with engine(testbed.urls["target"], "target") as e:
            capped = await e.generate(ids, max_new_tokens=3, temperature=0.0)
            step = await e.generate(ids, max_new_tokens=40, stop=["\n\n"], temperature=0.0)
            greedy = [await e.generate(ids, max_new_tokens=40, temperature=0.0) for _ in range(2)]
            hot = [await e.generate(ids, max_new_tokens=40, temperature=5.0) for _ in range(4)]
            return capped, step, greedy, hot

    capped, step, greedy, hot = asyncio.run(go())
    assert capped.finish == "length" and len(capped.token_ids) == 3
    assert step.finish == "stop" and step.matched_stop == "\n\n" and step.text.endswith("\n\n")
    assert step.text.count("\n\n") == 1 and pr.decode(step.token_ids) == step.text
    assert greedy[0].text == greedy[1].text
    assert len({h.text for h in hot}) > 1  # temperature reaches the sampler


def test_score_matches_transformers_first_token_included(testbed):
    from transformers import AutoModelForCausalLM

    path = str(MODELS / "chain-target")
    pr = Prompter(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    cases = []
    for p in reasoning.generate("test", 4):
        paras = reasoning.reference_solution(p).split(reasoning.PARAGRAPH)
        prefix = prompt(pr, p.problem) + pr.encode(PARA.join(paras[:2]) + PARA)  # score the first round's paragraph
        cases.append((prefix, pr.encode(paras[2] + PARA)))
    cases.append((prompt(pr, "Compute 1 + 1."), pr.encode("9 * 9 = 7" + PARA)))  # an unlikely chunk

    async def go():
        async with engine(testbed.urls["target"], "target") as e:
            return await asyncio.gather(*(e.score(a, b) for a, b in cases))

    scored = asyncio.run(go())
    for (prefix, chunk), s in zip(cases, scored):
        with torch.no_grad():
            logits = model(torch.tensor([prefix + chunk])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        ref = [lp[len(prefix) - 1 + i, t].item() for i, t in enumerate(chunk)]
        assert len(s.logprobs) == len(chunk)
        assert max(abs(a - b) for a, b in zip(s.logprobs, ref)) < 1e-4
    assert scored[-1].ppl > 10 * scored[0].ppl  # a wrong step is out of distribution


def test_openai_chat_completions_answers(testbed):
    """The OpenAI route, through the target's chat template: greedy, it works the first
    round of a test problem right."""
    p = reasoning.generate("test", 1)[0]
    r = httpx.post(testbed.urls["target"] + "/v1/chat/completions", timeout=60, json={
        "model": "default", "messages": [{"role": "user", "content": p.problem}],
        "max_tokens": 120, "temperature": 0})
    assert r.status_code == 200
    text = r.json()["choices"][0]["message"]["content"]
    assert reasoning.equation(p.rule, p.start, p.rule.apply(p.start)) in text, text
