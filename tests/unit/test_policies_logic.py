"""Policy control flow on a scripted in-process engine (pure logic; the real-server tests
in tests/server/test_atts_real.py are what show the feature working)."""

import asyncio
from pathlib import Path

from atts.method.conformal import ConformalCalibration, ConformalGate
from atts.tasks.datasets import Question
from atts.engines.sglang import RequestStats, Scoring
from atts.method.policies import ATTS, ATTSParams, DraftOnly
from atts.runtime.runner import Chunking, Role, SampleState, run_sample
from atts.testing.fakes import FakePrompter, ScriptedEngine, SeededEngine


def run(policy, draft_texts, target_texts, max_turns=4):
    d, t = ScriptedEngine("draft", draft_texts), ScriptedEngine("target", target_texts)
    roles = {"draft": Role("draft", d, FakePrompter([1, 2, 3]), 0.8), "target": Role("target", t, FakePrompter([1, 2, 3]), 0.8)}
    state = asyncio.run(run_sample(policy, SampleState(Question(0, "q", "p", "4", "arith"), 0), roles,
                                   Chunking(("\n\n",), 40, max_turns, 1000)))
    return state, d, t


GATE = ConformalGate("marginal", {"all": ConformalCalibration(tuple([1.0] * 10 + [2.0] * 5), 0.2)})


def test_replace_mode_resamples_then_target_writes():
    pol = ATTS(ATTSParams(alpha=0.2, mode="replace", max_resample=1), GATE)
    state, d, t = run(pol, ["1 + 1 = 2\n\n", "BAD\n\n", "BAD again\n\n", "The answer is \\boxed{4}.<eos>"],
                      ["2 + 2 = 4\n\n"])
    assert state.status == "done" and state.stop_reason == "eos"
    assert state.text == "1 + 1 = 2\n\n2 + 2 = 4\n\nThe answer is \\boxed{4}."
    decisions = [(s["turn"], s["attempt"], s["role"], s.get("decision"), s["kept"]) for s in state.steps]
    assert decisions == [(0, 0, "draft", "accept", True), (1, 0, "draft", "takeover", False),
                         (1, 1, "draft", "takeover", False), (1, 0, "target", None, True),
                         (2, 0, "draft", "accept", True)]


def test_append_mode_keeps_draft_and_target_continues_after_it():
    pol = ATTS(ATTSParams(alpha=0.2, mode="append"), GATE)
    state, d, t = run(pol, ["BAD\n\n", "The answer is \\boxed{4}.<eos>"], ["fixed\n\n"])
    assert state.text == "BAD\n\nfixed\n\nThe answer is \\boxed{4}."
    # the target's generation prompt is its scoring prompt plus the chunk: one shared prefix
    score_call = next(c for c in t.calls if c[0] == "score")
    gen_call = next(c for c in t.calls if c[0] == "generate")
    assert gen_call[1] == score_call[1] + score_call[2]


def test_chunks_concatenate_exactly_and_stop_on_turn_cap():
    state, d, t = run(DraftOnly(), ["a = 1\n\n", "b = 2", "c"], [], max_turns=3)
    assert state.stop_reason == "max_turns" and state.text == "a = 1\n\nb = 2c"
    # each prompt is the previous prompt plus the previous chunk's own ids, nothing inserted
    prompts = [c[1] for c in d.calls]
    assert prompts[1] == prompts[0] + [ord(c) for c in "a = 1\n\n"]
    assert prompts[2] == prompts[1] + [ord(c) for c in "b = 2"]


# ----------------------------------------------------------------------------- comparison policies

import math  # noqa: E402

from atts.method.policies import (ATTSSelf, ATTSSelfParams, SpecThinking, SpecThinkingParams, SyncRanked,  # noqa: E402
                           SyncRankedParams, budget, classify_lookahead, judge_score)


def test_judge_score_greedy_and_average():
    top = [(math.log(0.5), 1, "7"), (math.log(0.25), 2, " 9"), (math.log(0.2), 3, "x"), (math.log(0.05), 4, "10")]
    assert judge_score("7", top, "greedy") == 7.0
    assert judge_score("x", top, "greedy") == 0.0
    # digits only, renormalised: (7 * 0.5 + 9 * 0.25) / 0.75
    assert abs(judge_score("7", top, "average") - (7 * 0.5 + 9 * 0.25) / 0.75) < 1e-12
    assert judge_score("x", [(0.0, 1, "x")], "average") == 0.0


def test_budget_rounding_has_mean_alpha_n():
    assert budget(0.5, 4, "nearest", 0.9) == 2 and budget(0.7, 2, "nearest", 0.0) == 1
    assert budget(0.7, 2, "stochastic", 0.39) == 2 and budget(0.7, 2, "stochastic", 0.41) == 1
    us = [i / 1000 for i in range(1000)]
    assert abs(sum(budget(0.7, 3, "stochastic", u) for u in us) / 1000 - 2.1) < 1e-9
    assert budget(1.0, 3, "stochastic", 0.5) == 3 and budget(0.0, 3, "stochastic", 0.0) == 0


def test_classify_lookahead():
    neg, pos = ("wait", "check"), ("yes",)
    assert classify_lookahead("Hmm, WAIT a second", neg, pos) == "negative"
    assert classify_lookahead("yes, and check", neg, pos) == "negative"
    assert classify_lookahead("Yes that is it", neg, pos) == "positive"
    assert classify_lookahead("2 + 2 = 4", neg, pos) == "neutral"


def test_atts_self_keeps_lowest_ppl_when_every_attempt_fails():
    gate = ConformalGate("marginal", {"all": ConformalCalibration(tuple([1.0] * 20), 0.2)})
    pol = ATTSSelf(ATTSSelfParams(alpha=0.2, max_resample=2, grouping="marginal", randomize_ties=False), gate)

    class LengthPPL(ScriptedEngine):  # PPL = the chunk's length: every chunk fails the gate
        async def score(self, prefix, chunk):
            self.calls.append(("score", list(prefix), list(chunk)))
            return Scoring(list(chunk), [-math.log(len(chunk))] * len(chunk), RequestStats("score", self.role, 0.0))

    d, t = LengthPPL("draft", ["BAD one\n\n", "BAD\n\n", "BAD 33\n\n", "x"]), ScriptedEngine("target", [])
    roles = {"draft": Role("draft", d, FakePrompter([1, 2, 3]), 0.8), "target": Role("target", t, FakePrompter([1, 2, 3]), 0.8)}
    state = asyncio.run(run_sample(pol, SampleState(Question(0, "q", "p", "4", "arith"), 0), roles,
                                   Chunking(("\n\n",), 40, 1, 1000)))
    turn0 = [s for s in state.steps if s["turn"] == 0]
    assert [(s["attempt"], s["decision"]) for s in turn0] == [(0, "takeover"), (1, "takeover"), (2, "takeover")]
    assert [s["kept"] for s in turn0] == [False, True, False] and turn0[1].get("kept_lowest_ppl")
    assert state.text == "BAD\n\n"
    assert not t.calls and sum(c[0] == "score" for c in d.calls) == 3  # the draft scored itself


def test_sync_ranked_barrier_gives_top_b_highest_ppl_to_target():
    pol = SyncRanked(SyncRankedParams(alpha=0.5, rounding="nearest"))
    roles = {r: Role(r, SeededEngine(r), FakePrompter([1, 2, 3]), 0.8) for r in ("draft", "target")}
    qs = [Question(i, f"q{i}", "p", "4", "arith") for i in range(2)]
    pairs = [(q, r) for q in qs for r in range(4)]

    async def go():
        pol.begin(pairs)

        async def one(q, r):
            try:
                return await run_sample(pol, SampleState(q, r), roles, Chunking(("\n\n",), 40, 3 if r else 1, 1000))
            finally:
                pol.on_sample_end(q, r)  # repeat 0 stops after one turn: it leaves the barrier
        return await asyncio.gather(*(one(q, r) for q, r in pairs))

    states = asyncio.run(go())
    groups = {}
    for st in states:
        for s in st.steps:
            if s.get("decision"):
                groups.setdefault((st.question.id, s["turn"]), []).append(s)
    assert sorted(len(v) for v in groups.values()) == [3, 3, 3, 3, 4, 4]
    for steps in groups.values():
        b = budget(0.5, len(steps), "nearest", 0.0)
        taken = sorted(s["ppl"] for s in steps if s["decision"] == "takeover")
        kept = sorted(s["ppl"] for s in steps if s["decision"] == "accept")
        assert len(taken) == b == steps[0]["budget"] and (not kept or taken[0] >= kept[-1])


def test_spec_thinking_recap_after_negative_paragraphs():
    pol = SpecThinking(SpecThinkingParams(lookahead_tokens=5, negative=("wait",), positive=(), verify=("chk",),
                                          recap_after=2, recap_after_step=1, recap_tokens=7, recap_tokens_step=3))
    state, d, t = run(pol, ["wait ", "wait ", "ok\n\n", "ok\n\n"],
                      ["T1\n\n", "T2 chk", "more\n\n", "R1\n\n", "R2\n\n"], max_turns=4)
    kinds = [(s["turn"], s["role"], s.get("lookahead"), bool(s.get("recap")), bool(s.get("verify"))) for s in state.steps]
    assert kinds[:5] == [(0, "draft", "negative", False, False), (0, "target", None, False, False),
                         (1, "draft", "negative", False, False), (1, "target", None, False, False),
                         (1, "target", None, False, True)]
    # two negative paragraphs: turn 2 is a recap, the recap prompt then the target's text
    assert kinds[5:7] == [(2, "target", None, True, False), (2, "target", None, False, False)]
    assert "Let me check whether there are some wrong steps:R1" in state.text
    assert kinds[7] == (3, "draft", "neutral", False, False)


def test_compare_user_errors_exit_2(tmp_path, capsys):
    from atts.cli import main

    cfg = str(Path(__file__).resolve().parents[2] / "configs" / "testbed.yaml")
    base = ["compare", "--config", cfg, "--output", str(tmp_path / "c")]
    assert main(base + ["--policies", "atts,nope"]) == 2
    assert main(base + ["--policies", "atts,atts"]) == 2
    assert main(base + ["--policies", "atts", "--set", "policy.alpha=0.3"]) == 2
    assert main(base + ["--policies", "atts", "--param", "other.alpha=0.3"]) == 2
    assert main(base + ["--policies", "x=sync_ranked", "--param", "x.alpha=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown policy 'nope'" in err and "Traceback" not in err and "alpha: must be in [0, 1]" in err
