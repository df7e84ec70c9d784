"""ATTS: the draft proposes each chunk, the target scores its perplexity, and the conformal
gate decides whether the target takes over; ATTSSelf, the draft scoring itself."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from atts.engines.sglang import Generation, Scoring
from atts.errors import ConfigError
from atts.runtime.runner import request_seed

from atts.method.policies.base import ProposingPolicy, target_writes


@dataclass(frozen=True)
class ATTSParams:
    alpha: float = 0.4
    mode: Literal["append", "replace"] = "replace"
    grouping: Literal["marginal", "per_question", "per_turn"] = "per_turn"
    max_resample: int = 1
    randomize_ties: bool = True  # smoothed conformal p-value (exact rate with tied scores)
    pipeline: bool = True  # draft chunk k+1 while the target scores chunk k (same decisions)

    def validate(self, key: str) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{key}.alpha: must be in (0, 1), got {self.alpha}")
        if self.max_resample < 0:
            raise ConfigError(f"{key}.max_resample: must be >= 0")


@dataclass
class Proposal:
    gen: Generation
    scoring: Scoring | None
    attempt: int
    pre_generated: bool = False  # drafted during the previous turn's scoring (pipelining)


@dataclass
class PreDraft:
    """A next-turn draft request sent early: its prompt ids and turn, and the task."""

    turn: int
    prompt: list[int]
    task: asyncio.Task


_PRE = "atts.predraft"  # key of the pending PreDraft in ctx.carry


class ATTS(ProposingPolicy):
    """Asynchronous test-time scaling with a conformal takeover test.

    Each turn: (1) the draft writes a chunk; (2) the target scores it (PPL);
    (3) p = conformal p-value of the PPL; p <= alpha: the chunk is out of distribution.
    - ``append`` (the paper's): the draft chunk is kept, and on takeover the target
      writes a continuation after it.
    - ``replace``: accept the draft chunk; else resample the draft up to
      ``max_resample`` times, accepting the first that passes; else the target writes
      the chunk in its place.
    The test at attempt 0 is the calibrated event: its rate is what alpha controls.

    Pipelining (``pipeline``): while the target scores a draft chunk c at turn t, the
    draft already writes turn t+1's first chunk on the optimistic prompt history + c,
    with exactly the seed turn t+1 attempt 0 gets. Turn t+1 consumes it only if its own
    draft request would be byte-identical (same prompt ids, same turn and attempt, hence
    same seed); otherwise (c rejected, or the target continued after it) it is
    cancelled and its tokens, if already generated, are counted as ``draft_wasted``: it
    never appears in the records. Given the same chunks, the decisions are those of the
    unpipelined policy (tests/unit/test_pipeline.py).
    """

    name = "atts"
    Params = ATTSParams
    needs_calibration = True

    async def propose(self, ctx, attempt: int = 0) -> Proposal:
        g, pre = await self._draft(ctx, attempt)
        return Proposal(g, await self._score(ctx, g), attempt, pre)

    # -- pipelining
    async def _draft(self, ctx, attempt: int) -> tuple[Generation, bool]:
        """The draft chunk of this turn's ``attempt``: the pre-generated one if its request
        is the one we would send now, else a fresh request."""
        pre = ctx.carry.pop(_PRE, None)
        if pre is not None:
            if attempt == 0 and pre.turn == ctx.state.turn and pre.prompt == ctx.request_ids("draft"):
                return await pre.task, True
            self._discard(ctx, pre)
        return await ctx.generate("draft", attempt=attempt), False

    async def _score(self, ctx, g: Generation) -> Scoring | None:
        """The target's scoring of ``g``; when pipelining, the next turn's draft chunk
        is requested on history + ``g`` meanwhile (unless keeping ``g`` ends the sample)."""
        if not self.params.pipeline or ctx.finished_if_kept(g):
            return await ctx.score(g)
        self.discard_pending(ctx)
        turn = ctx.state.turn + 1
        pre = PreDraft(turn, ctx.request_ids("draft", after=g),
                       asyncio.create_task(ctx.generate("draft", attempt=0, after=g, turn=turn)))
        try:
            s = await ctx.score(g)
        except BaseException:
            self._discard(ctx, pre)
            raise
        ctx.carry[_PRE] = pre
        return s

    def discard_pending(self, ctx) -> None:
        pre = ctx.carry.pop(_PRE, None)
        if pre is not None:
            self._discard(ctx, pre)

    @staticmethod
    def _discard(ctx, pre: PreDraft) -> None:
        """Cancel a pre-generated chunk that will not be used (the HTTP request is
        closed; a server that already computed it only wasted work). Tokens it already
        produced move from ``draft_generated`` to ``draft_wasted``."""
        tok = ctx.state.tokens
        if not pre.task.done():
            pre.task.cancel()
            tok["draft_cancelled"] = tok.get("draft_cancelled", 0) + 1
            return
        if pre.task.cancelled() or pre.task.exception() is not None:  # retrieved: no warning
            return
        n = pre.task.result().stats.output_tokens
        tok["draft_generated"] -= n
        tok["draft_wasted"] = tok.get("draft_wasted", 0) + n

    def decide(self, ctx, prop: Proposal):
        if prop.scoring is None:  # empty chunk: the draft ended; nothing to judge
            return None
        u = 1.0
        if self.params.randomize_ties:  # a seeded uniform per decision, reproducible
            u = request_seed(ctx.chunking.seed, "tie", ctx.state.question.id, ctx.state.repeat, ctx.state.turn,
                             prop.attempt, phase=ctx.chunking.phase) / 0x7FFFFFFF
        return self.gate.decide(prop.scoring.ppl, ctx.state.question.id, ctx.state.turn, u)

    async def resolve(self, ctx, prop: Proposal) -> None:
        d = self.decide(ctx, prop)
        pre = {"pre_generated": True} if prop.pre_generated else None
        if d is None or not d.takeover:
            ctx.keep(prop.gen)
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
            return
        self.discard_pending(ctx)  # the next turn will not start after this chunk alone
        if self.params.mode == "append":
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
            t = await ctx.generate("target", after=prop.gen)
            ctx.keep(prop.gen)
            ctx.keep(t)
            ctx.log(t, kept=True)
            return
        ctx.log(prop.gen, kept=False, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
        for attempt in range(prop.attempt + 1, self.params.max_resample + 1):
            again = await self.propose(ctx, attempt)
            d = self.decide(ctx, again)
            ok = d is None or not d.takeover
            ctx.log(again.gen, kept=ok, attempt=attempt, scoring=again.scoring, decision=d)
            if ok:
                ctx.keep(again.gen)
                return
            self.discard_pending(ctx)
        await target_writes(ctx)

    async def turn(self, ctx) -> None:
        try:
            await self.resolve(ctx, await self.propose(ctx))
        except BaseException:  # a failed or cancelled sample leaves no request behind
            self.discard_pending(ctx)
            raise


# ----------------------------------------------------------------------------- baselines
# The policies below are what ATTS is compared with (`atts compare`). Each records its
# decision on the step it judges (attempt 0, a `decision`), so `takeover_rate` means the
# same thing everywhere: the share of judged chunks handed to the target (or, for
# atts_self, rejected), and each records what its definition needs to be checked.


@dataclass(frozen=True)
class ATTSSelfParams:
    alpha: float = 0.4
    grouping: Literal["marginal", "per_question", "per_turn"] = "per_turn"
    max_resample: int = 2  # 3 attempts in all, as the research code's self_reject (issue 13 item 7)
    role: Literal["draft", "target"] = "draft"  # the one model that drafts and scores
    randomize_ties: bool = True

    def validate(self, key: str) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{key}.alpha: must be in (0, 1), got {self.alpha}")
        if self.max_resample < 0:
            raise ConfigError(f"{key}.max_resample: must be >= 0")


class ATTSSelf(ATTS):
    """One model drafts and scores itself (the research code's self_reject): a chunk
    whose own PPL fails the conformal test is resampled, up to ``max_resample`` times;
    the first that passes is kept, and if all fail, the lowest-PPL attempt is kept. The
    calibration is the same model's PPLs of its own chunks."""

    name = "atts_self"
    Params = ATTSSelfParams

    @staticmethod
    def calibration_kind(params) -> str:
        return f"self_ppl:{params.role}"

    async def propose(self, ctx, attempt: int = 0) -> Proposal:
        role = self.params.role
        g = await ctx.generate(role, attempt=attempt)
        return Proposal(g, await ctx.score(g, role=role), attempt)

    async def resolve(self, ctx, prop: Proposal) -> None:
        failed: list[tuple[Proposal, dict]] = []
        while True:
            d = self.decide(ctx, prop)
            ok = d is None or not d.takeover
            step = ctx.log(prop.gen, kept=ok, attempt=prop.attempt, scoring=prop.scoring, decision=d)
            if ok:
                ctx.keep(prop.gen)
                return
            failed.append((prop, step))
            if prop.attempt >= self.params.max_resample:
                break
            prop = await self.propose(ctx, prop.attempt + 1)
        best, step = min(failed, key=lambda ps: ps[0].scoring.ppl)
        step["kept"] = True
        step["kept_lowest_ppl"] = True
        ctx.keep(best.gen)


# -- specreason
