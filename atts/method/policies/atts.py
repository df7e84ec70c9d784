"""ATTS: the draft proposes each chunk, the target scores its perplexity, and the conformal
gate decides whether the target takes over; ATTSSelf, the draft scoring itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atts.engines.base import Generation, Scoring
from atts.errors import ConfigError
from atts.seeds import request_seed

from atts.method.policies import pipeline
from atts.method.policies.base import ProposingPolicy, target_writes
from atts.method.policies.pipeline import PreDraft  # noqa: F401  (re-exported)


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

    Pipelining (``pipeline``, `atts.method.policies.pipeline`): the draft writes turn
    t+1's chunk while the target scores turn t's; same decisions, less wall time.
    """

    name = "atts"
    Params = ATTSParams
    needs_calibration = True

    async def propose(self, ctx, attempt: int = 0) -> Proposal:
        g, pre = await self._draft(ctx, attempt)
        return Proposal(g, await self._score(ctx, g), attempt, pre)

    # -- pipelining (atts.method.policies.pipeline: same decisions, less wall time)
    async def _draft(self, ctx, attempt: int) -> tuple[Generation, bool]:
        return await pipeline.draft(ctx, attempt)  # without pipelining nothing is pending: a fresh request

    async def _score(self, ctx, g: Generation) -> Scoring | None:
        if not self.params.pipeline:
            return await ctx.score(g)
        return await pipeline.score_while_drafting(ctx, g)

    def discard_pending(self, ctx) -> None:
        pipeline.discard_pending(ctx)

    def decide(self, ctx, prop: Proposal):
        """The conformal takeover test on the chunk's score s = PPL = exp(-(1/n) Σ log p_target(x_i | x_<i)).

        With the calibration scores s_1..s_m of the chunk's group (its turn, question or
        all: `grouping`), `atts.method.conformal.ConformalCalibration.p_value` computes
            p = (#{j: s_j > s} + u · (1 + #{j: s_j = s})) / (m + 1)
        (u ~ U(0, 1] breaks ties: the smoothed p-value, exact rate even with tied scores),
        and the target takes over iff p <= alpha, i.e. s beyond the calibrated quantile:
        under exchangeability P(takeover) = floor((m + 1) alpha) / (m + 1) <= alpha."""
        if prop.scoring is None:  # empty chunk: the draft ended; nothing to judge
            return None
        u = 1.0  # u = 1: the conservative p-value (ties count against takeover)
        if self.params.randomize_ties:  # u = a seeded uniform per decision, reproducible
            u = request_seed(ctx.chunking.seed, "tie", ctx.state.question.id, ctx.state.repeat, ctx.state.turn,
                             prop.attempt, phase=ctx.chunking.phase) / 0x7FFFFFFF  # 31-bit seed / (2^31 - 1) in (0, 1]
        # Decision(p_value = p, threshold = q_hat, takeover = p <= alpha, group)
        return self.gate.decide(prop.scoring.ppl, ctx.state.question.id, ctx.state.turn, u)

    async def resolve(self, ctx, prop: Proposal) -> None:
        d = self.decide(ctx, prop)
        pre = {"pre_generated": True} if prop.pre_generated else None
        if d is None or not d.takeover:  # p > alpha: the chunk is in distribution, keep it
            ctx.keep(prop.gen)
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
            return
        self.discard_pending(ctx)  # p <= alpha: the next turn will not start after this chunk alone
        if self.params.mode == "append":  # history += draft chunk + target continuation after it
            ctx.log(prop.gen, kept=True, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
            t = await ctx.generate("target", after=prop.gen)
            ctx.keep(prop.gen)
            ctx.keep(t)
            ctx.log(t, kept=True)
            return
        # replace: the draft chunk is dropped; resample attempts 1..max_resample, each tested again
        ctx.log(prop.gen, kept=False, attempt=prop.attempt, scoring=prop.scoring, decision=d, extra=pre)
        for attempt in range(prop.attempt + 1, self.params.max_resample + 1):
            again = await self.propose(ctx, attempt)
            d = self.decide(ctx, again)
            ok = d is None or not d.takeover  # the first resample with p > alpha is kept
            ctx.log(again.gen, kept=ok, attempt=attempt, scoring=again.scoring, decision=d)
            if ok:
                ctx.keep(again.gen)
                return
            self.discard_pending(ctx)
        await target_writes(ctx)  # every attempt had p <= alpha: history += target chunk in its place

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

    async def attempts(self, ctx, prop: Proposal) -> tuple[Proposal | None, list[tuple[Proposal, dict]]]:
        """Test ``prop``, then resample while attempts fail, up to ``max_resample`` more;
        each attempt logged. (the first that passed, or None; the failed ones with their
        logged steps)."""
        failed: list[tuple[Proposal, dict]] = []
        while True:
            d = self.decide(ctx, prop)
            ok = d is None or not d.takeover
            step = ctx.log(prop.gen, kept=ok, attempt=prop.attempt, scoring=prop.scoring, decision=d)
            if ok:
                return prop, failed
            failed.append((prop, step))
            if prop.attempt >= self.params.max_resample:
                return None, failed
            prop = await self.propose(ctx, prop.attempt + 1)

    def keep(self, ctx, prop: Proposal) -> None:
        ctx.keep(prop.gen)

    def keep_lowest_ppl(self, ctx, failed: list[tuple[Proposal, dict]]) -> None:
        """Every attempt failed: the lowest-PPL one is kept (its step marked so)."""
        best, step = min(failed, key=lambda ps: ps[0].scoring.ppl)
        step["kept"] = True
        step["kept_lowest_ppl"] = True
        self.keep(ctx, best)

    async def resolve(self, ctx, prop: Proposal) -> None:
        passed, failed = await self.attempts(ctx, prop)
        if passed is not None:
            self.keep(ctx, passed)
        else:
            self.keep_lowest_ppl(ctx, failed)


# -- specreason
