"""SpecReason and its conformal variant: the target judges each draft step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from atts.engines.sglang import Generation, RequestStats
from atts.errors import ConfigError
from atts.method.conformal import Decision
from atts.seeds import request_seed

from atts.method.policies.base import ProposingPolicy, coin, rule, target_writes


JUDGE_INSTRUCTION = ("Rate the last reasoning step for correctness and logical validity, "
                     "from 0 (wrong) to 9 (surely right). Reply with one digit.")
JUDGE_PREFILL = "I think the quality score is: "


def judge_score(text: str, top: list[tuple[float, int, str]], method: str) -> float:
    """SpecReason's step score from the judge's one generated token.
    greedy: the digit generated (0 if it is not a digit);
    average: E[d] over the top logprobs restricted to digits and renormalised,
    sum_d d p(d) / sum_d p(d) (0 if no digit is among them)."""
    if method == "greedy":
        t = text.strip()
        return float(t) if len(t) == 1 and t.isdigit() else 0.0
    mass: dict[int, float] = {}
    for lp, _, tok in top:
        t = tok.strip()
        if len(t) == 1 and t.isdigit():
            mass[int(t)] = mass.get(int(t), 0.0) + math.exp(lp)
    total = sum(mass.values())
    return sum(d * p for d, p in mass.items()) / total if total > 0 else 0.0


@dataclass(frozen=True)
class JudgeParams:
    score: Literal["greedy", "average"] = "greedy"
    top_logprobs: int = 10
    instruction: str = JUDGE_INSTRUCTION
    prefill: str = JUDGE_PREFILL
    target_first_steps: int = 0  # the target writes the first n steps itself

    def validate(self, key: str) -> None:
        if self.top_logprobs < 1:
            raise ConfigError(f"{key}.top_logprobs: must be >= 1")


@dataclass(frozen=True)
class SpecReasonParams(JudgeParams):
    threshold: float = 7.0  # accept iff score >= threshold (the paper: 7; 9 on AIME)

    def validate(self, key: str) -> None:
        super().validate(key)
        if not 0 <= self.threshold <= 9:
            raise ConfigError(f"{key}.threshold: must be in [0, 9], got {self.threshold}")


@dataclass
class Judged:
    gen: Generation
    score: float | None  # None: empty chunk, nothing judged
    extra: dict
    attempt: int = 0
    judge_stats: RequestStats | None = None


class SpecReason(ProposingPolicy):
    """SpecReason: the draft writes a step; the target rates it 0-9 in one greedy token
    through a judge prompt (top-N logprobs returned); accept iff score >= threshold,
    else the draft step is discarded and the target writes the step."""

    name = "specreason"
    Params = SpecReasonParams

    async def judge(self, ctx, g: Generation) -> Judged:
        p, role = self.params, ctx.roles["target"]
        ids = role.prompter.judge_ids(ctx.state.question, ctx.state.text + ctx.chunk_text(g)[0], p.instruction, p.prefill)
        r = await role.engine.generate(ids, max_new_tokens=1, temperature=0.0, top_logprobs=p.top_logprobs)
        ctx.state.tokens["target_judged"] = ctx.state.tokens.get("target_judged", 0) + len(ids)
        # engines that return ids only (the OpenAI-compatible one) leave the text to us
        top = [(lp, t, s or role.prompter.decode([t])) for lp, t, s in (r.top_logprobs[0] if r.top_logprobs else [])]
        s = judge_score(r.text, top, p.score)
        extra = {"judge_score": s, "judge_token": r.text, "judge_method": p.score,
                 "judge_top": [[round(lp, 4), t] for lp, _, t in top]}
        return Judged(g, s, extra, judge_stats=r.stats)

    async def propose(self, ctx, attempt: int = 0) -> Judged:
        g = await ctx.generate("draft", attempt=attempt)
        if not g.token_ids:
            return Judged(g, None, {}, attempt)
        j = await self.judge(ctx, g)
        j.attempt = attempt
        return j

    def decide(self, ctx, prop: Judged) -> Decision:
        t = self.params.threshold
        return rule(prop.score < t, "specreason", None, t)

    async def resolve(self, ctx, prop: Judged) -> None:
        if prop.score is None:
            ctx.keep(prop.gen)
            ctx.log(prop.gen, kept=True)
            return
        d = self.decide(ctx, prop)
        step = ctx.log(prop.gen, kept=not d.takeover, decision=d, extra=prop.extra)
        step["requests"].append(prop.judge_stats.as_dict())
        if not d.takeover:
            ctx.keep(prop.gen)
            return
        await target_writes(ctx)

    async def turn(self, ctx) -> None:
        if ctx.state.turn < self.params.target_first_steps:
            await target_writes(ctx)
            return
        await self.resolve(ctx, await self.propose(ctx))


@dataclass(frozen=True)
class SpecReasonConformalParams(JudgeParams):
    score: Literal["greedy", "average"] = "average"  # continuous: few ties
    alpha: float = 0.4
    grouping: Literal["marginal", "per_question", "per_turn"] = "per_turn"
    randomize_ties: bool = True

    def validate(self, key: str) -> None:
        super().validate(key)
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{key}.alpha: must be in (0, 1), got {self.alpha}")


class SpecReasonConformal(SpecReason):
    """SpecReason's judge score, calibrated like ATTS instead of a fixed threshold: the
    nonconformity of a step is 9 - score, its conformal p-value comes from the same
    quantity on the calibration split (`atts.calibrate`), and the target rewrites the
    step iff p <= alpha, so alpha sets the takeover rate as in ATTS."""

    name = "specreason_conformal"
    Params = SpecReasonConformalParams
    needs_calibration = True

    @staticmethod
    def calibration_kind(params) -> str:
        return f"judge:{params.score}:{request_seed(0, params.instruction, params.prefill)}"

    @staticmethod
    def nonconformity(prop: Judged) -> float | None:
        return None if prop.score is None else 9.0 - prop.score

    def decide(self, ctx, prop: Judged) -> Decision:
        u = 1.0
        if self.params.randomize_ties:
            u = coin(ctx, "tie", prop.attempt)
        return self.gate.decide(self.nonconformity(prop), ctx.state.question.id, ctx.state.turn, u)


# -- spec_thinking
