"""Policy control flow on a scripted in-process engine (pure logic; the real-server tests
in test_atts_real.py are what show the feature working)."""

import asyncio

from atts.conformal import ConformalCalibration, ConformalGate
from atts.data import Question
from atts.engines import Generation, RequestStats, Scoring
from atts.policies import ATTS, ATTSParams, DraftOnly
from atts.runner import Chunking, Role, SampleState, run_sample


class FakePrompter:
    tokenizer_path = "fake"

    def prompt_ids(self, q):
        return [1, 2, 3]

    def encode(self, text):
        return [ord(c) for c in text]


class ScriptedEngine:
    """generate() pops scripted texts; score() returns a PPL encoded in the chunk text."""

    def __init__(self, role, texts):
        self.role, self.texts, self.calls = role, list(texts), []

    async def generate(self, ids, **kw):
        self.calls.append(("generate", list(ids)))
        text = self.texts.pop(0)
        finish = "eos" if text.endswith("<eos>") else "stop"
        text = text.replace("<eos>", "")
        return Generation(text, [ord(c) for c in text], finish, "\n\n" if finish == "stop" else None,
                          RequestStats("generate", self.role, 0.0, output_tokens=len(text)))

    async def score(self, prefix, chunk):
        self.calls.append(("score", list(prefix), list(chunk)))
        ppl = 9.0 if "BAD" in "".join(map(chr, chunk)) else 1.0
        import math
        return Scoring(list(chunk), [-math.log(ppl)] * len(chunk), RequestStats("score", self.role, 0.0))


def run(policy, draft_texts, target_texts, max_turns=4):
    d, t = ScriptedEngine("draft", draft_texts), ScriptedEngine("target", target_texts)
    roles = {"draft": Role("draft", d, FakePrompter(), 0.8), "target": Role("target", t, FakePrompter(), 0.8)}
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
