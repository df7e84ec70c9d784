"""Policies: how a turn composes the draft and the target. One small class each, over
the shared machinery of `atts.runner.SampleContext`.

A policy has a frozen ``Params`` dataclass (validated from the config's ``policy``
section) and ``async turn(ctx)``, which appends at least one kept chunk to the sample.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from atts.engines.sglang import Generation, RequestStats, Scoring
from atts.errors import ConfigError
from atts.method.conformal import ConformalGate, Decision
from atts.runtime.runner import request_seed


@dataclass(frozen=True)
class NoParams:
    pass


async def target_writes(ctx) -> None:
    """The target writes this turn's chunk (after the kept history), which is kept."""
    t = await ctx.generate("target")
    ctx.keep(t)
    ctx.log(t, kept=True)


class Policy:
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_calibration: ClassVar[bool] = False

    def __init__(self, params=None, gate: ConformalGate | None = None):
        self.params = params if params is not None else self.Params()
        self.gate = gate

    async def turn(self, ctx) -> None:
        raise NotImplementedError

    def begin(self, samples: list) -> None:
        """Called once by the runner with the (question, repeat) pairs about to run."""

    def on_sample_end(self, question, repeat: int) -> None:
        """Called by the runner when a sample stops, however it stopped."""


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
                             prop.attempt) / 0x7FFFFFFF
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


def coin(ctx, tag: str, *parts) -> float:
    """A uniform in [0, 1), seeded by (run seed, tag, question, repeat, turn, parts):
    reruns draw the same coins."""
    s = ctx.state
    return request_seed(ctx.chunking.seed, tag, s.question.id, s.repeat, s.turn, *parts) / 2**31


def rule(takeover: bool, group: str, p_value: float | None = None, threshold: float = math.nan) -> Decision:
    """A non-conformal decision in the shape `SampleContext.log` records."""
    return Decision(p_value, threshold, takeover, group)


def _check_rate(key: str, name: str, v: float) -> None:
    if not 0 <= v <= 1:
        raise ConfigError(f"{key}.{name}: must be in [0, 1], got {v}")


@dataclass(frozen=True)
class AlphaParams:
    alpha: float = 0.4

    def validate(self, key: str) -> None:
        _check_rate(key, "alpha", self.alpha)


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


@dataclass(frozen=True)
class ATTSSelfParams:
    alpha: float = 0.4
    grouping: Literal["marginal", "per_question", "per_turn"] = "per_turn"
    max_resample: int = 3
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


class SpecReason(Policy):
    """SpecReason: the draft writes a step; the target rates it 0-9 in one greedy token
    through a judge prompt (top-N logprobs returned); accept iff score >= threshold,
    else the draft step is discarded and the target writes the step."""

    name = "specreason"
    Params = SpecReasonParams

    async def judge(self, ctx, g: Generation) -> Judged:
        p, role = self.params, ctx.roles["target"]
        ids = role.prompter.judge_ids(ctx.state.question, ctx.state.text + g.text, p.instruction, p.prefill)
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


def classify_lookahead(text: str, negative: tuple[str, ...], positive: tuple[str, ...]) -> str:
    """negative if any negative keyword occurs (case-insensitive), else positive if any
    positive one does, else neutral."""
    t = text.lower()
    if any(k.lower() in t for k in negative):
        return "negative"
    if any(k.lower() in t for k in positive):
        return "positive"
    return "neutral"


@dataclass(frozen=True)
class SpecThinkingParams:
    lookahead_tokens: int = 20
    negative: tuple[str, ...] = ("wait", "alternatively", "hold on", "another", "verify", "think again",
                                 "recap", "check")
    positive: tuple[str, ...] = ("yeah", "yes", "final answer", "confident")
    verify: tuple[str, ...] = ("verify", "check")  # in the target's kept text: it goes on
    verify_tokens: int = 125
    recap_after: int = 15  # negative paragraphs before a recap
    recap_after_step: int = 5
    recap_after_max: int = 30
    recap_text: str = "Let me check whether there are some wrong steps:"
    recap_tokens: int = 125
    recap_tokens_step: int = 25
    recap_tokens_max: int = 200

    def validate(self, key: str) -> None:
        for k in ("lookahead_tokens", "verify_tokens", "recap_after", "recap_tokens"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{key}.{k}: must be >= 1")


class SpecThinking(Policy):
    """Speculative Thinking: at each paragraph boundary the draft writes a look-ahead of
    ``lookahead_tokens``; if it holds a negative or positive keyword, it is discarded
    and the target writes those tokens instead (and goes on for ``verify_tokens`` if its
    text holds a verify word); then the draft finishes the paragraph. After
    ``recap_after`` negative paragraphs the recap prompt is appended and the target
    writes ``recap_tokens``; both then grow by their steps, up to their maxima. The
    counters are read from the sample's steps, so a sample carries no hidden state.
    Token counts above the configured chunk size are capped to it."""

    name = "spec_thinking"
    Params = SpecThinkingParams

    def _recap_state(self, ctx) -> tuple[int, int, int]:
        """(negative paragraphs since the last recap, recap threshold, recap tokens)."""
        p, n_recaps, neg = self.params, 0, 0
        for s in ctx.state.steps:
            if s.get("recap"):
                n_recaps, neg = n_recaps + 1, 0
            elif s.get("lookahead") == "negative":
                neg += 1
        return (neg, min(p.recap_after + n_recaps * p.recap_after_step, p.recap_after_max),
                min(p.recap_tokens + n_recaps * p.recap_tokens_step, p.recap_tokens_max))

    async def _recap(self, ctx, n_tokens: int) -> None:
        ids = ctx.roles["target"].prompter.encode(self.params.recap_text)
        g = Generation(self.params.recap_text, ids, "length", None, RequestStats("inject", "target", time.time()))
        ctx.keep(g)
        ctx.log(g, kept=True, extra={"recap": True})
        t = await ctx.generate("target", attempt=2, max_tokens=n_tokens)
        ctx.keep(t)
        ctx.log(t, kept=True, extra={"recap_tokens": n_tokens})

    async def turn(self, ctx) -> None:
        p = self.params
        neg, threshold, recap_tokens = self._recap_state(ctx)
        if neg >= threshold:
            await self._recap(ctx, recap_tokens)
            return
        la = await ctx.generate("draft", max_tokens=p.lookahead_tokens)
        if not la.token_ids:
            ctx.keep(la)
            ctx.log(la, kept=True)
            return
        kind = classify_lookahead(la.text, p.negative, p.positive)
        d = rule(kind != "neutral", kind)
        ctx.log(la, kept=not d.takeover, decision=d, extra={"lookahead": kind})
        last = la
        if d.takeover:
            last = await ctx.generate("target", max_tokens=p.lookahead_tokens)
            ctx.keep(last)
            ctx.log(last, kept=True)
            if any(v.lower() in last.text.lower() for v in p.verify):
                last = await ctx.generate("target", attempt=1, max_tokens=p.verify_tokens)
                ctx.keep(last)
                ctx.log(last, kept=True, extra={"verify": True})
        else:
            ctx.keep(la)
        if last.finish == "length":  # the paragraph is not over: the draft finishes it
            rest = await ctx.generate("draft", attempt=1)
            ctx.keep(rest)
            ctx.log(rest, kept=True)


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (
    DraftOnly, TargetOnly, ATTS, ATTSSelf, SyncRanked, RandomTakeover, SpecReason, SpecReasonConformal, SpecThinking,
    RandomSwitch)}


def make_policy(name: str, params, gate: ConformalGate | None = None) -> Policy:
    return POLICIES[name](params, gate)
