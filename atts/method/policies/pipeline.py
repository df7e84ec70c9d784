"""Pipelining: draft turn t+1 while the target scores turn t's chunk.

While the target scores a draft chunk c at turn t, the draft already writes turn t+1's
first chunk on the optimistic history + c, with exactly the seed turn t+1 attempt 0
gets. Turn t+1 consumes it only if its own draft request would be byte-identical (same
prompt ids, same turn and attempt, hence same seed); otherwise (c rejected, or the
target continued after it) it is cancelled and its tokens, if already generated, are
counted as ``draft_wasted``: it never appears in the records. So, given the same
chunks, the decisions are those of the unpipelined policy (tests/unit/test_pipeline.py);
only the wall time changes.

The pending early request lives in the sample's ``ctx.carry`` (one at most).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from atts.engines.base import Generation, Scoring

CARRY_KEY = "atts.predraft"  # key of the pending PreDraft in ctx.carry


@dataclass
class PreDraft:
    """A next-turn draft request sent early: its prompt ids and turn, and the task."""

    turn: int
    prompt: list[int]
    task: asyncio.Task


async def draft(ctx, attempt: int) -> tuple[Generation, bool]:
    """This turn's draft chunk for ``attempt`` and whether it was pre-generated: the
    pending one if its request is exactly the one we would send now, else a fresh one."""
    pre = ctx.carry.pop(CARRY_KEY, None)
    if pre is not None:
        if attempt == 0 and pre.turn == ctx.state.turn and pre.prompt == ctx.request_ids("draft"):
            return await pre.task, True
        discard(ctx, pre)
    return await ctx.generate("draft", attempt=attempt), False


async def score_while_drafting(ctx, g: Generation) -> Scoring | None:
    """The target's scoring of ``g``, with the next turn's draft chunk requested on
    history + ``g`` meanwhile (not when keeping ``g`` would end the sample)."""
    if ctx.finished_if_kept(g):
        return await ctx.score(g)
    discard_pending(ctx)
    turn = ctx.state.turn + 1
    pre = PreDraft(turn, ctx.request_ids("draft", after=g),
                   asyncio.create_task(ctx.generate("draft", attempt=0, after=g, turn=turn)))
    try:
        s = await ctx.score(g)
    except BaseException:
        discard(ctx, pre)
        raise
    ctx.carry[CARRY_KEY] = pre
    return s


def discard_pending(ctx) -> None:
    """Cancel the pending early draft, if any (the next turn will not start where it
    assumed: a takeover, a resample, or the sample is over)."""
    pre = ctx.carry.pop(CARRY_KEY, None)
    if pre is not None:
        discard(ctx, pre)


def discard(ctx, pre: PreDraft) -> None:
    """Cancel a pre-generated chunk that will not be used (the HTTP request is closed; a
    server that already computed it only wasted work). Tokens it already produced move
    from ``draft_generated`` to ``draft_wasted``."""
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
