"""SpecThinking: a look-ahead on each paragraph; negative or positive cue words hand it to the target."""

from __future__ import annotations

import time
from dataclasses import dataclass

from atts.engines.sglang import Generation, RequestStats
from atts.errors import ConfigError

from atts.method.policies.base import Policy, rule


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
