"""ATTSSelfFork: the research code's ``self_reject_fork`` (issue 13 item 7).

One model drafts and scores itself, as `ATTSSelf`. The samples of a question share a
pool: after each turn a sample publishes its kept history and its score

    score = mean PPL of its kept chunks - turn_weight * turns - kchar_weight * (chars / 1000)

(lower is better: confident, and further along). A sample whose attempts at a turn all
fail the conformal test (``max_resample`` + 1 of them) does not keep its lowest-PPL
attempt: it continues from the history of the best-scoring peer (lowest score, another
repeat of the same question, still without an answer or an end of sequence), followed
by a reconsider hint (``hint``), and takes over that peer's PPLs as its own. With no
such peer it falls back to `ATTSSelf`'s rule (keep the lowest-PPL attempt).

Kept from the research code: the shared pool per question, the score's form and the
hint. Ours: the default weights (``turn_weight`` 0.05, ``kchar_weight`` 0; the research
code's are per-experiment flags), the exclusion of finished peers (copying one would end
the sample at once with the peer's answer and make two majority votes one), and the
sample's own turn counter running on (the turn cap counts its own turns). The fork is
recorded as a step ``{"fork_from": repeat, "fork_score": s, "role", "text": hint}``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from atts.errors import ConfigError
from atts.method.policies.atts import ATTSSelf, ATTSSelfParams, Proposal
from atts.runtime.runner import Segment
from atts.tasks.grading import extract_boxed


@dataclass(frozen=True)
class ATTSSelfForkParams(ATTSSelfParams):
    turn_weight: float = 0.05  # a: score credit per completed turn
    kchar_weight: float = 0.0  # b: score credit per thousand kept characters
    hint: str = "\n\nWait, let me reconsider.\n\n"

    def validate(self, key: str) -> None:
        super().validate(key)
        if self.turn_weight < 0 or self.kchar_weight < 0:
            raise ConfigError(f"{key}.turn_weight / kchar_weight: must be >= 0")


@dataclass
class PeerEntry:
    repeat: int
    segments: list[Segment]
    ppls: list[float]
    turns: int
    score: float


def fork_score(ppls: list[float], turns: int, chars: int, a: float, b: float) -> float:
    return statistics.fmean(ppls) - a * turns - b * chars / 1000  # mean PPL - a*turn - b*kchars


_PPLS = "fork.ppls"  # ctx.carry: the PPLs of the sample's kept chunks


class ATTSSelfFork(ATTSSelf):
    name = "atts_self_fork"
    Params = ATTSSelfForkParams

    def __init__(self, params=None, gate=None):
        super().__init__(params, gate)
        self.pool: dict[str, dict[int, PeerEntry]] = {}  # question id -> repeat -> latest entry

    # -- the pool
    def publish(self, ctx) -> None:
        s, ppls = ctx.state, ctx.carry.get(_PPLS, [])
        if not ppls:
            return
        p = self.params
        turns = s.turn + 1  # this turn is complete
        self.pool.setdefault(s.question.id, {})[s.repeat] = PeerEntry(
            s.repeat, list(s.segments), list(ppls), turns, fork_score(ppls, turns, len(s.text), p.turn_weight,
                                                                     p.kchar_weight))

    def best_peer(self, ctx) -> PeerEntry | None:
        """The lowest-scoring other sample of the question whose history has neither an
        answer nor an end of sequence."""
        peers = [e for r, e in self.pool.get(ctx.state.question.id, {}).items()
                 if r != ctx.state.repeat and e.segments and e.segments[-1].finish != "eos"
                 and extract_boxed("".join(seg.text for seg in e.segments)) is None]
        return min(peers, key=lambda e: (e.score, e.repeat), default=None)

    def on_sample_end(self, question, repeat: int) -> None:
        self.pool.get(question.id, {}).pop(repeat, None)

    # -- a turn
    def keep(self, ctx, prop: Proposal) -> None:
        ctx.keep(prop.gen)
        if prop.scoring is not None:
            ctx.carry.setdefault(_PPLS, []).append(prop.scoring.ppl)
        self.publish(ctx)

    async def resolve(self, ctx, prop: Proposal) -> None:
        passed, failed = await self.attempts(ctx, prop)
        if passed is not None:
            self.keep(ctx, passed)
            return
        peer = self.best_peer(ctx)
        if peer is None:  # nobody to continue from: ATTSSelf's rule
            self.keep_lowest_ppl(ctx, failed)
            return
        self.fork(ctx, peer, attempt=failed[-1][0].attempt + 1)

    def fork(self, ctx, peer: PeerEntry, attempt: int) -> None:
        """Continue from ``peer``'s history plus the hint (written as the scoring role's text)."""
        role = self.params.role
        hint_ids = ctx.roles[role].prompter.encode(self.params.hint)
        copied = [Segment(seg.role, seg.text, {k: list(v) for k, v in seg.ids.items()}, seg.finish, seg.held)
                  for seg in peer.segments]
        hint = Segment(role, self.params.hint, {ctx.roles[role].prompter.tokenizer_path: hint_ids}, "hint")
        ctx.state.segments = copied + [hint]
        ctx.carry[_PPLS] = list(peer.ppls)
        ctx.state.steps.append({"turn": ctx.state.turn, "attempt": attempt, "role": role, "text": self.params.hint,
                                "n_tokens": len(hint_ids), "finish": "hint", "kept": True, "requests": [],
                                "fork_from": peer.repeat, "fork_score": peer.score})
        self.publish(ctx)
