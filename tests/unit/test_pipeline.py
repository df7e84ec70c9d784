"""Pipelined verification makes the same decisions as the unpipelined policy.

Pure logic on a deterministic fake engine: a chunk is a function of (prompt ids, seed),
a PPL a function of (prefix, chunk), and every request sleeps a seeded random time so
that pre-generated drafts, scoring and takeovers interleave as they do on real servers.
Given the same chunks, the pipelined and unpipelined ATTS must produce identical step
sequences (decisions, rejections, resamples, target chunks), texts and token counts,
in both modes; the real-server check is in tests/server/test_bench_real.py."""

import asyncio
import random

import pytest

from atts.method.conformal import ConformalCalibration, ConformalGate
from atts.tasks.datasets import Question
from atts.method.policies import ATTS, ATTSParams
from atts.runtime.runner import Chunking, Role, SampleState, run_sample
from atts.testing.fakes import DeterministicEngine, FakePrompter


# per-turn gate: threshold inside the "ok" cluster at turn 0 (rejects some right chunks at
# random), between the clusters later
GATE = ConformalGate("marginal", {"all": ConformalCalibration(
    tuple([1.0 + i / 1e4 for i in range(0, 1000, 50)] + [3.05] * 8), 0.45)})


def _run(params: ATTSParams, seed: int, n_questions=6, k=3, fail_on=None):
    async def go():
        rng = random.Random(seed)
        roles = {r: Role(r, DeterministicEngine(r, rng, fail_on), FakePrompter(), 0.8) for r in ("draft", "target")}
        pol = ATTS(params, GATE)
        states = [SampleState(Question(i, f"q{i}", "p", "4", "arith"), r) for i in range(n_questions) for r in range(k)]
        out = await asyncio.gather(*(run_sample(pol, s, roles, Chunking(("\n\n",), 40, 6, 1000)) for s in states))
        await asyncio.sleep(0.01)  # let cancelled requests unwind
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return out, leftover
    return asyncio.run(go())


def _comparable(state: SampleState):
    steps = [{k: v for k, v in s.items() if k not in ("requests", "pre_generated")} for s in state.steps]
    tokens = {k: v for k, v in state.tokens.items() if k not in ("draft_wasted", "draft_cancelled")}
    return state.status, state.stop_reason, state.text, steps, tokens


@pytest.mark.parametrize("mode,max_resample", [("replace", 0), ("replace", 1), ("replace", 2), ("append", 0)])
def test_pipelined_decisions_equal_unpipelined(mode, max_resample):
    pre_used = wasted = takeovers = resampled = 0
    for seed in range(4):  # different latencies, so different interleavings
        base = dict(alpha=0.45, mode=mode, max_resample=max_resample)
        plain, left_a = _run(ATTSParams(**base, pipeline=False), seed)
        piped, left_b = _run(ATTSParams(**base, pipeline=True), seed + 100)
        assert not left_a and not left_b, "requests left running after the samples finished"
        for a, b in zip(plain, piped):
            assert _comparable(a) == _comparable(b)
            assert all(not s.get("pre_generated") for s in a.steps)
        for b in piped:
            pre_used += sum(bool(s.get("pre_generated")) for s in b.steps)
            wasted += b.tokens.get("draft_wasted", 0) + b.tokens.get("draft_cancelled", 0)
            takeovers += sum(s.get("decision") == "takeover" for s in b.steps)
            resampled += sum(s["attempt"] > 0 for s in b.steps)
    # the scenario exercises what the claim is about
    assert pre_used > 10 and wasted > 0 and takeovers > 10
    assert resampled > 0 or max_resample == 0


def test_pipelined_sends_the_unpipelined_requests_early():
    """A consumed pre-generated chunk is the one the unpipelined policy requests: same
    prompt ids and seed (the fake engine's chunk is a function of exactly those)."""
    plain, _ = _run(ATTSParams(alpha=0.45, pipeline=False), 1)
    piped, _ = _run(ATTSParams(alpha=0.45, pipeline=True), 2)
    pre = [(b.key, s["turn"], s["text"]) for b in piped for s in b.steps if s.get("pre_generated")]
    plain_steps = {(a.key, s["turn"], s["attempt"], s["role"]): s["text"] for a in plain for s in a.steps}
    assert pre and all(plain_steps[(k, t, 0, "draft")] == text for k, t, text in pre)


def test_failed_scoring_cancels_the_pre_generated_chunk():
    states, leftover = _run(ATTSParams(alpha=0.45, pipeline=True), 3, fail_on="ok1")
    assert any(s.status == "failed" for s in states)
    assert not leftover
