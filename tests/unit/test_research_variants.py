"""Issue 13 item 7: atts_self's 3 attempts, the atts_self_fork policy's logic (fake
engines), the budget accuracy, OlympiadBench's hub filter and AMC23 from the hub."""

import asyncio
import sys
import types

from atts.method.conformal import ConformalCalibration, ConformalGate
from atts.method.policies import POLICIES, ATTSSelf, ATTSSelfFork, ATTSSelfForkParams, ATTSSelfParams, fork_score
from atts.method.policies.fork import PeerEntry
from atts.runtime.runner import Chunking, Role, SampleState, Segment, run_sample
from atts.runtime.summary import budget_accuracy
from atts.tasks.datasets import Question, load_questions
from atts.testing.fakes import FakePrompter, ScriptedEngine

GATE = ConformalGate("marginal", {"all": ConformalCalibration(tuple([1.0] * 10 + [2.0] * 5), 0.2)})  # PPL 9 fails
Q = Question(0, "q", "p", "4", "arith")


def _roles(draft):
    return {"draft": Role("draft", draft, FakePrompter([1, 2]), 0.8),
            "target": Role("target", ScriptedEngine("target", []), FakePrompter([1, 2]), 0.8)}


def _run(policy, engine, repeat=0, max_turns=2):
    return asyncio.run(run_sample(policy, SampleState(Q, repeat), _roles(engine), Chunking(("\n\n",), 40, max_turns, 1000)))


def test_atts_self_makes_three_attempts_in_all_by_default():
    assert ATTSSelfParams().max_resample == 2
    eng = ScriptedEngine("draft", ["BAD1\n\n", "BAD22\n\n", "BAD333\n\n", "The answer is \\boxed{4}.<eos>"])
    st = _run(ATTSSelf(ATTSSelfParams(), GATE), eng)
    turn0 = [s for s in st.steps if s["turn"] == 0]
    assert [s["attempt"] for s in turn0] == [0, 1, 2]
    assert st.text.startswith("BAD1\n\n") and st.text.endswith("\\boxed{4}.")  # lowest PPL (ties: first) kept


def test_fork_continues_from_the_best_peer_with_a_hint():
    pol = POLICIES["atts_self_fork"](ATTSSelfForkParams(), GATE)
    assert isinstance(pol, ATTSSelfFork)
    eng = ScriptedEngine("draft", ["good0\n\n", "good1\n\n",  # sample 0: two accepted turns
                                   "BAD1\n\n", "BAD2\n\n", "BAD3\n\n",  # sample 1, turn 0: every attempt fails
                                   "The answer is \\boxed{4}.<eos>"])
    s0 = _run(pol, eng, repeat=0)
    assert s0.stop_reason == "max_turns" and pol.pool["q"][0].turns == 2
    s1 = _run(pol, eng, repeat=1, max_turns=3)
    hint = ATTSSelfForkParams().hint
    assert s1.text == "good0\n\ngood1\n\n" + hint + "The answer is \\boxed{4}."
    fork = [s for s in s1.steps if "fork_from" in s]
    assert len(fork) == 1 and fork[0]["fork_from"] == 0 and fork[0]["turn"] == 0 and fork[0]["kept"]
    assert [s["attempt"] for s in s1.steps if s["turn"] == 0 and "fork_from" not in s] == [0, 1, 2]
    assert not any(s["kept"] for s in s1.steps if s["turn"] == 0 and "fork_from" not in s)
    pol.on_sample_end(Q, 0)
    assert 0 not in pol.pool["q"]


def test_fork_without_peer_keeps_the_lowest_ppl_attempt():
    pol = ATTSSelfFork(ATTSSelfForkParams(), GATE)
    eng = ScriptedEngine("draft", ["BAD1\n\n", "BAD2\n\n", "BAD3\n\n", "\\boxed{4}<eos>"])
    st = _run(pol, eng)
    assert st.text.startswith("BAD1\n\n") and not any("fork_from" in s for s in st.steps)


def _seg(text, finish="stop"):
    return Segment("draft", text, {"fake": [ord(c) for c in text]}, finish)


def test_best_peer_by_score_and_finished_peers_excluded():
    p = ATTSSelfForkParams(turn_weight=0.1, kchar_weight=0.5)
    assert abs(fork_score([1.0, 2.0], 3, 2000, 0.1, 0.5) - (1.5 - 0.3 - 1.0)) < 1e-12  # mean PPL - a*turn - b*kchars
    pol = ATTSSelfFork(p, GATE)

    class Ctx:
        state = SampleState(Q, 0)

    pol.pool["q"] = {0: PeerEntry(0, [_seg("self")], [1.0], 1, -9.0),  # itself: never
                     1: PeerEntry(1, [_seg("a")], [1.5], 1, 1.4),
                     2: PeerEntry(2, [_seg("b")], [1.2], 1, 1.1),
                     3: PeerEntry(3, [_seg("\\boxed{3}")], [1.0], 1, 0.5),  # has an answer
                     4: PeerEntry(4, [_seg("c", "eos")], [1.0], 1, 0.2)}  # ended
    assert pol.best_peer(Ctx()).repeat == 2


def test_budget_accuracy_per_question_group():
    def rec(q, turns_decisions):
        return {"question_id": q, "steps": [{"turn": t, "attempt": 0, "decision": d} for t, d in turns_decisions]}

    # alpha 0.5, q1 turn 0: 4 judged, 2 takeovers (B = 2): 1.0; q2 turn 0: 4 judged, 3 takeovers: 1 - 1/2 = 0.5
    recs = [rec("q1", [(0, "takeover")]), rec("q1", [(0, "takeover")]), rec("q1", [(0, "accept")]),
            rec("q1", [(0, "accept")]), rec("q2", [(0, "takeover")]), rec("q2", [(0, "takeover")]),
            rec("q2", [(0, "takeover")]), rec("q2", [(0, "accept"), (1, "accept")])]
    b = budget_accuracy(recs, 0.5)
    assert b["turn0_mean"] == 0.75 and b["n_groups"] == 3
    assert abs(b["mean"] - (1.0 + 0.5 + 0.0) / 3) < 1e-12  # q2 turn 1: B = 0.5, actual 0: 1 - 0.5/0.5 = 0


def _fake_hub(monkeypatch, rows):
    calls = []

    def load_dataset(path, conf, split, revision=None):
        calls.append((path, conf, split))
        return rows

    import datasets  # the real package (its exception types are what atts maps); only its loader is faked

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_olympiadbench_from_the_hub_keeps_numerical_single_answers(monkeypatch, tmp_path):
    row = {"question": "q", "final_answer": ["3"], "answer_type": "Numerical", "is_multiple_answer": False}
    rows = [dict(row, id=1), dict(row, id=2, is_multiple_answer=True), dict(row, id=3, answer_type="Expression"),
            dict(row, id=4, final_answer=["7"])]
    calls = _fake_hub(monkeypatch, rows)
    qs = load_questions("olympiadbench", split="all", source="hub", data_dir=str(tmp_path))
    assert calls == [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")]
    assert [(q.id, q.answer) for q in qs] == [("1", "3"), ("4", "7")]


def test_amc23_loads_from_the_hub(monkeypatch, tmp_path):
    calls = _fake_hub(monkeypatch, [{"id": 0, "question": "Cities A and B ...", "answer": 27.0}])
    qs = load_questions("amc23", split="all", source="hub", data_dir=str(tmp_path))
    assert calls == [("math-ai/amc23", None, "test")] and qs[0].problem.startswith("Cities") and qs[0].answer == "27"
