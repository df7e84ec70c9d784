"""Policies: how a turn composes the draft and the target. One small class each, over
the shared machinery of `atts.runner.SampleContext`.

A policy has a frozen ``Params`` dataclass (validated from the config's ``policy``
section) and ``async turn(ctx)``, which appends at least one kept chunk to the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from atts.conformal import ConformalGate
from atts.config import ConfigError
from atts.engines import Generation, Scoring
from atts.runner import request_seed


@dataclass(frozen=True)
class NoParams:
    pass


class Policy:
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_calibration: ClassVar[bool] = False

    def __init__(self, params=None, gate: ConformalGate | None = None):
        self.params = params if params is not None else self.Params()
        self.gate = gate

    async def turn(self, ctx) -> None:
        raise NotImplementedError


class DraftOnly(Policy):
    """The draft writes every chunk."""

    name = "draft_only"

    async def turn(self, ctx) -> None:
        g = await ctx.generate("draft")
        ctx.keep(g)
        ctx.log(g, kept=True)


class TargetOnly(Policy):
    """The target writes every chunk."""

    name = "target_only"

    async def turn(self, ctx) -> None:
        g = await ctx.generate("target")
        ctx.keep(g)
        ctx.log(g, kept=True)


@dataclass(frozen=True)
class ATTSParams:
    alpha: float = 0.4
    mode: Literal["append", "replace"] = "replace"
    grouping: Literal["marginal", "per_question", "per_turn"] = "per_turn"
    max_resample: int = 1
    randomize_ties: bool = True  # smoothed conformal p-value (exact rate with tied scores)

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


class ATTS(Policy):
    """Asynchronous test-time scaling with a conformal takeover test.

    Each turn: (1) the draft writes a chunk; (2) the target scores it (PPL);
    (3) p = conformal p-value of the PPL; p <= alpha: the chunk is out of distribution.
    - ``append`` (the paper's): the draft chunk is kept, and on takeover the target
      writes a continuation after it.
    - ``replace``: accept the draft chunk; else resample the draft up to
      ``max_resample`` times, accepting the first that passes; else the target writes
      the chunk in its place.
    The test at attempt 0 is the calibrated event: its rate is what alpha controls.
    """

    name = "atts"
    Params = ATTSParams
    needs_calibration = True

    async def propose(self, ctx, attempt: int = 0) -> Proposal:
        g = await ctx.generate("draft", attempt=attempt)
        return Proposal(g, await ctx.score(g), attempt)

    def decide(self, ctx, prop: Proposal):
        if prop.scoring is None:  # empty chunk: the draft ended; nothing to judge
            return None
        u = 1.0
        if self.params.randomize_ties:  # a seeded uniform per decision, reproducible
            u = request_seed(ctx.chunking.seed, "tie", ctx.state.question.id, ctx.state.repeat, ctx.state.turn,
                             prop.attempt) / 0x7FFFFFFF
        return self.gate.decide(prop.scoring.ppl, ctx.state.question.id, ctx.state.turn, u)

    async def resolve(self, ctx, prop: Proposal) -> None:
        d = self.decide(ctx, prop)
        if d is None or not d.takeover:
            ctx.keep(prop.gen)
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d)
            return
        if self.params.mode == "append":
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d)
            t = await ctx.generate("target", after=prop.gen)
            ctx.keep(prop.gen)
            ctx.keep(t)
            ctx.log(t, kept=True)
            return
        ctx.log(prop.gen, kept=False, attempt=prop.attempt, scoring=prop.scoring, decision=d)
        for attempt in range(prop.attempt + 1, self.params.max_resample + 1):
            again = await self.propose(ctx, attempt)
            d = self.decide(ctx, again)
            ok = d is None or not d.takeover
            ctx.log(again.gen, kept=ok, attempt=attempt, scoring=again.scoring, decision=d)
            if ok:
                ctx.keep(again.gen)
                return
        t = await ctx.generate("target")
        ctx.keep(t)
        ctx.log(t, kept=True)

    async def turn(self, ctx) -> None:
        await self.resolve(ctx, await self.propose(ctx))


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (DraftOnly, TargetOnly, ATTS)}


def make_policy(name: str, params, gate: ConformalGate | None = None) -> Policy:
    return POLICIES[name](params, gate)
