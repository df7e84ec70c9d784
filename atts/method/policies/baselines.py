"""The baselines: one model alone, random takeovers, the synchronous ranked barrier."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Literal

from atts.errors import ConfigError
from atts.seeds import request_seed

from atts.method.policies.atts import Proposal
from atts.method.policies.base import AlphaParams, Policy, _check_rate, coin, rule, target_writes


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
        await target_writes(ctx)


class RandomTakeover(Policy):
    """The chance control for ATTS's test: the draft writes the chunk, and with
    probability alpha (a seeded coin, not a PPL test) it is discarded and the target
    writes the chunk instead (ATTS replace mode without scoring or resampling)."""

    name = "random_takeover"
    Params = AlphaParams

    async def turn(self, ctx) -> None:
        g = await ctx.generate("draft")
        if not g.token_ids:  # the draft ended: nothing to judge (as in ATTS)
            ctx.keep(g)
            ctx.log(g, kept=True)
            return
        u = coin(ctx, "random_takeover")
        d = rule(u < self.params.alpha, "random", u, self.params.alpha)
        ctx.log(g, kept=not d.takeover, decision=d)
        if not d.takeover:
            ctx.keep(g)
            return
        await target_writes(ctx)


@dataclass(frozen=True)
class RandomSwitchParams:
    ratio: float = 1.0  # target chunks : draft chunks = 1 : ratio

    def validate(self, key: str) -> None:
        if self.ratio < 0:
            raise ConfigError(f"{key}.ratio: must be >= 0, got {self.ratio}")


class RandomSwitch(Policy):
    """SplitReason's control: before each chunk a seeded coin picks the writer, the
    target with probability 1 / (ratio + 1), else the draft. No chunk is wasted."""

    name = "random_switch"
    Params = RandomSwitchParams

    @property
    def p_target(self) -> float:
        return 1.0 / (self.params.ratio + 1.0)

    async def turn(self, ctx) -> None:
        u = coin(ctx, "random_switch")
        d = rule(u < self.p_target, "random_switch", u, self.p_target)
        g = await ctx.generate("target" if d.takeover else "draft")
        ctx.keep(g)
        ctx.log(g, kept=True, decision=d)


# -- sync_ranked


@dataclass(frozen=True)
class SyncRankedParams:
    alpha: float = 0.4
    # B for n ranked chunks: "stochastic" = floor(alpha n) + Bernoulli(frac(alpha n)), so
    # E[B] = alpha n exactly (ATTS's rate); "nearest" = floor(alpha n + 1/2)
    rounding: Literal["stochastic", "nearest"] = "stochastic"

    def validate(self, key: str) -> None:
        _check_rate(key, "alpha", self.alpha)


def budget(alpha: float, n: int, rounding: str, u: float) -> int:
    """Takeovers B out of n ranked chunks (see SyncRankedParams.rounding)."""
    x = alpha * n
    if rounding == "nearest":
        return min(n, math.floor(x + 0.5))
    return min(n, math.floor(x) + (u < x - math.floor(x)))


@dataclass
class _Round:
    entries: dict = field(default_factory=dict)  # repeat -> (ctx, Proposal)
    result: dict = field(default_factory=dict)  # repeat -> dict(takeover, rank, budget, n_ranked)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Group:
    members: set = field(default_factory=set)  # repeats still running
    round: _Round = field(default_factory=_Round)


class SyncRanked(Policy):
    """The synchronous baseline: every turn, the samples of a question wait for each
    other (a per-question barrier; a finished sample leaves its group), the target
    scores every draft chunk, and the B highest-PPL chunks are replaced by the target's
    (B/n ~ alpha, see `budget`); the others are kept. Ties in PPL (quantized to 1e-5)
    are broken by a seeded coin."""

    name = "sync_ranked"
    Params = SyncRankedParams

    def __init__(self, params=None, gate=None):
        super().__init__(params, gate)
        self._groups: dict[str, _Group] = {}

    def begin(self, samples: list) -> None:
        self._groups = {}
        for q, r in samples:
            self._groups.setdefault(q.id, _Group()).members.add(r)

    def on_sample_end(self, question, repeat: int) -> None:
        g = self._groups.get(question.id)
        if g is not None:
            g.members.discard(repeat)
            self._close_if_complete(question.id, g)

    def _close_if_complete(self, qid: str, g: _Group) -> None:
        rnd = g.round
        if rnd.entries and set(rnd.entries) >= g.members:
            g.round = _Round()
            self._rank(qid, rnd)

    def _rank(self, qid: str, rnd: _Round) -> None:
        ctx0 = next(iter(rnd.entries.values()))[0]
        seed, turn = ctx0.chunking.seed, ctx0.state.turn
        scored = [(r, p) for r, (_, p) in rnd.entries.items() if p.scoring is not None]
        n = len(scored)
        b = budget(self.params.alpha, n, self.params.rounding, request_seed(seed, "sync_budget", qid, turn) / 2**31)
        order = sorted(scored, key=lambda rp: (-round(rp[1].scoring.ppl, 5), request_seed(seed, "sync_tie", qid, turn, rp[0])))
        for rank, (r, _) in enumerate(order):
            rnd.result[r] = {"takeover": rank < b, "rank": rank, "budget": b, "n_ranked": n}
        rnd.done.set()

    async def _join(self, ctx, prop: Proposal) -> dict | None:
        qid, r = ctx.state.question.id, ctx.state.repeat
        g = self._groups.get(qid)
        if g is None or r not in g.members:
            raise RuntimeError("sync_ranked: the runner did not register this sample (policy.begin)")
        rnd = g.round
        rnd.entries[r] = (ctx, prop)
        self._close_if_complete(qid, g)
        await rnd.done.wait()
        return rnd.result.get(r)

    async def turn(self, ctx) -> None:
        g = await ctx.generate("draft")
        s = await ctx.score(g)
        res = await self._join(ctx, Proposal(g, s, 0))
        if res is None:  # empty chunk: not ranked
            ctx.keep(g)
            ctx.log(g, kept=True, scoring=s)
            return
        d = rule(res["takeover"], f"q:{ctx.state.question.id}/turn:{ctx.state.turn}")
        ctx.log(g, kept=not d.takeover, scoring=s, decision=d, extra=res)
        if not d.takeover:
            ctx.keep(g)
            return
        await target_writes(ctx)


# -- atts_self
