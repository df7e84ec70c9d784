"""The runner's strategies are passed in: schedules (`Concurrent(max_in_flight)`,
`QuestionGroups`), scoring prompts (shared / text), the progress callback; and
``max_in_flight`` (config key, ``--max-in-flight``) caps the samples at once without
changing the run identity. Fake engines, no server."""

from __future__ import annotations

import asyncio

import pytest

from atts.cli import build_parser
from atts.commands.evaluate import run_hash
from atts.config import ConfigError, load_config, with_overrides
from atts.method.policies import DraftOnly
from atts.runtime.context import Chunking, Role, SampleContext, SampleState, SharedPrompt, TextPrompt
from atts.runtime.runner import run_all
from atts.runtime.schedule import Concurrent, QuestionGroups
from atts.runtime.store import RunStore
from atts.tasks.datasets import Question
from atts.tasks.grading import Grader
from atts.testing.fakes import FakePrompter, SeededEngine
from conftest import ROOT

QUESTIONS = [Question(i, f"q{i}", "p", "4", "arith") for i in range(5)]


def _run(tmp_path, schedule, k=4, progress=False):
    async def go():
        eng = _Tracker("draft")
        roles = {r: Role(r, eng, FakePrompter(), 0.8) for r in ("draft", "target")}
        with Grader(1) as grader:
            stats = await run_all(DraftOnly(DraftOnly.Params()), QUESTIONS, k, roles, Chunking(("\n\n",), 40, 2, 1000), RunStore(tmp_path), grader, progress, schedule=schedule)
        return eng, stats

    RunStore(tmp_path).open("h", {}, force=True)
    return asyncio.run(go())


class _Tracker(SeededEngine):
    """Counts samples in flight: a sample starts at its first chunk (a prompt of 2 ids)
    and ends at its second (max_turns 2); records the peak and the start order."""

    def __init__(self, role):
        super().__init__(role)
        self.live = 0
        self.peak = 0
        self.order: list[int] = []

    async def generate(self, ids, *, seed=None, **kw):
        first = len(ids) == 2  # FakePrompter: [7, question index], no history yet
        if first:
            self.order.append(ids[1])
            self.live += 1
            self.peak = max(self.peak, self.live)
        await asyncio.sleep(0.002)
        g = await super().generate(ids, seed=seed, **kw)
        if not first:
            self.live -= 1
        return g


@pytest.mark.parametrize("cap", [1, 3])
def test_max_in_flight_caps_the_samples_at_once(tmp_path, cap):
    eng, stats = _run(tmp_path, Concurrent(max_in_flight=cap))
    assert stats["ran"] == 20 and eng.live == 0
    assert eng.peak == cap  # reached, never passed


def test_without_a_cap_every_sample_starts_at_once(tmp_path):
    eng, stats = _run(tmp_path, Concurrent())
    assert stats["ran"] == 20 and eng.peak == 20


def test_question_groups_finish_a_question_before_the_next(tmp_path):
    eng, _ = _run(tmp_path, QuestionGroups())
    assert eng.order == sorted(eng.order) and eng.peak == 4  # k samples of one question at a time
    assert _run(tmp_path / "s", "question_groups")[0].order == eng.order  # a name is accepted


def test_progress_is_a_callback(tmp_path):
    seen = []

    class Sink:
        def __init__(self, total):
            seen.append(("total", total))

        def update(self, rec):
            seen.append(rec["status"])

        def close(self):
            seen.append("closed")

    _run(tmp_path, Concurrent(), k=1, progress=Sink)
    assert seen[0] == ("total", 5) and seen[1:-1] == ["done"] * 5 and seen[-1] == "closed"


def test_scoring_prompt_strategies():
    roles = {r: Role(r, SeededEngine(r), FakePrompter(), 0.8) for r in ("draft", "target")}
    assert Chunking((), 8, 2, 100).scoring_prompt == SharedPrompt()  # the default
    assert Chunking((), 8, 2, 100, scoring_prompt="text").scoring_prompt == TextPrompt()  # a name is accepted
    st = SampleState(QUESTIONS[1], 0)
    shared = SampleContext(st, roles, Chunking((), 8, 2, 100))
    text = SampleContext(st, roles, Chunking((), 8, 2, 100, scoring_prompt=TextPrompt()))
    assert shared.scoring_prefix_ids() == [7, 1]  # the generation prompt
    assert text.scoring_prefix_ids() == [ord(c) for c in "p\n\n"]  # the question as plain text
    with pytest.raises(ValueError, match="unknown scoring prompt"):
        Chunking((), 8, 2, 100, scoring_prompt="mystery")


def test_max_in_flight_is_operational_and_checked():
    cfg = load_config(ROOT / "configs" / "testbed.yaml")
    capped = with_overrides(cfg, sets=["max_in_flight=4"])
    assert capped.max_in_flight == 4 and cfg.max_in_flight is None
    assert run_hash(capped, None) == run_hash(cfg, None)  # a resumed run may change it
    with pytest.raises(ConfigError, match="max_in_flight"):
        with_overrides(cfg, sets=["max_in_flight=0"])


def test_the_flag_becomes_the_config_key():
    ap = build_parser()
    a = ap.parse_args(["run", "--config", "c", "--max-in-flight", "8"])
    assert "max_in_flight=8" in a.set
    a = ap.parse_args(["evaluate", "--config", "c", "--set", "x=1", "--max-in-flight=2"])
    assert a.set == ["x=1", "max_in_flight=2"]
    for cmd in ("calibrate", "compare"):
        extra = ["--policies", "atts", "--output-dir", "o"] if cmd == "compare" else []
        assert "max_in_flight=3" in ap.parse_args([cmd, "--config", "c", *extra, "--max-in-flight", "3"]).set
    assert ap.parse_args(["bench", "--config", "c", "--output-dir", "o", "--max-in-flight", "4,64"]).max_in_flight == "4,64"
    for bad in (["evaluate", "--config", "c", "--max-in-flight", "0"], ["run", "--config", "c", "--max-in-flight", "x"]):
        with pytest.raises(SystemExit) as e:
            ap.parse_args(bad)
        assert e.value.code == 2

