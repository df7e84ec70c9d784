"""Chunk boundaries between two vocabularies, on the chain testbed's own tokenizers
(committed, so this runs in a user's clone too).

Draft chunks are cut at every draft token, mid-word included, and re-encoded for the
target. The target must read the text as its tokenizer writes it whole: a word split at
a chunk boundary ("an" | "swer" as "an", "s", "wer") is a tokenization no model writes,
and the target scored its first piece at about -15 nats, which took the AUROC of the
gate on turn-1 chunks from 0.83 to 0.56 (docs/testbed_chain.md). And the think block's
tags must survive the servers' ``skip_special_tokens``, as Qwen3's and R1's do."""

from __future__ import annotations

import random

import pytest

from atts.engines.sglang import Generation, RequestStats
from atts.runtime.runner import Chunking, Role, SampleContext, SampleState
from atts.tasks import reasoning
from atts.tasks.datasets import Question
from atts.tasks.prompts import Prompter
from conftest import MODELS

DRAFT, TARGET = MODELS / "chain-draft", MODELS / "chain-target"


@pytest.fixture(scope="module")
def pair() -> tuple[Prompter, Prompter]:
    return Prompter(str(DRAFT)), Prompter(str(TARGET))


def _question(p) -> Question:
    return Question(0, p.id, p.problem, p.answer, "chain")


def _gen(p: Prompter, role: str, ids: list[int]) -> Generation:
    return Generation(p.tok.decode(ids, skip_special_tokens=True), list(ids), "length", None,
                      RequestStats("generate", role, 0.0))


@pytest.mark.parametrize("every", [1, 3, 7, 23])
def test_the_target_reads_draft_chunks_as_one_text(pair, every):
    draft, target = pair
    prob = reasoning.generate("test", 1)[0]
    text = reasoning.solve(prob, random.Random(1)).text  # holds </think>
    ids = draft.encode(text)
    roles = {"draft": Role("draft", None, draft, 0.6), "target": Role("target", None, target, 0.6)}
    ctx = SampleContext(SampleState(_question(prob), 0), roles, Chunking((), 128, 15, 100_000))
    prompt = target.prompt_ids(_question(prob))
    split_words = 0
    for lo in range(0, len(ids), every):
        g = _gen(draft, "draft", ids[lo:lo + every])
        scoring, start = ctx.with_chunk(ctx.scoring_prefix_ids("target"), g, "target")
        kept = ctx.state.text + g.text
        assert scoring == prompt + target.encode(kept)  # the whole text, tokenized as a whole
        split_words += start < len(ctx.scoring_prefix_ids("target"))
        ctx.keep(g)
    assert ctx.state.text == text
    assert ctx.prefix_ids("target") == prompt + target.encode(text)
    assert ctx.prefix_ids("draft") == draft.prompt_ids(_question(prob)) + ids  # the draft keeps its exact ids
    assert split_words > 0  # some boundary did cut a word


def test_think_tags_survive_skip_special_tokens(pair):
    for p in pair:
        ids = p.encode("value is 4.\n\n</think>\n\nThe final value is \\boxed{4}.")
        assert p.tok.convert_tokens_to_ids("</think>") in ids  # one token, as in Qwen3
        assert "</think>" in p.tok.decode(ids, skip_special_tokens=True)


class _Scorer:
    def __init__(self):
        self.calls = []

    async def score(self, prefix, chunk):
        from atts.engines.base import Scoring
        self.calls.append((list(prefix), list(chunk)))
        return Scoring(list(chunk), [-0.1] * len(chunk), RequestStats("score", "target", 0.0))


def test_a_cut_word_is_scored_whole_with_the_next_chunk(pair):
    """"... the value wen" | "t down." : the first chunk is scored without " wen"; the
    second from " went" on, as the target writes it."""
    import asyncio

    draft, target = pair
    prob = reasoning.generate("test", 1)[0]
    scorer = _Scorer()
    roles = {"draft": Role("draft", None, draft, 0.6), "target": Role("target", scorer, target, 0.6)}
    ctx = SampleContext(SampleState(_question(prob), 0), roles, Chunking((), 128, 15, 100_000))
    first, second = "Okay, so the value wen", "t down.\n\nRound 2"
    for text in (first, second):
        g = _gen(draft, "draft", draft.encode(text))
        asyncio.run(ctx.score(g))
        ctx.keep(g)
    (p1, c1), (p2, c2) = scorer.calls
    assert target.tok.decode(c1) == "Okay, so the value"
    assert target.tok.decode(c2) == " went down.\n\nRound 2"  # a cut number is content: scored now
    assert p2 + c2 == target.prompt_ids(_question(prob)) + target.encode(first + second)
