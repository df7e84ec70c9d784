"""A sample's state and the operations a policy composes on it.

History: a sample's reasoning is a list of `Segment`s. A segment keeps the token ids of
the model that wrote it (its exact output) and, lazily, its encoding for the other
model's tokenizer, so each model's prompt is ``chat_template(question) + segments``:
a model's own chunks concatenate exactly, and the target's scoring prompt is a prefix of
its generation prompt (SGLang's radix cache reuses it). Text from the other tokenizer is
encoded to follow the view before it (`Prompter.encode_after`): a word a chunk boundary
cut is tokenized whole, replacing the few ids of its first part.

The scoring prompt is a strategy (`Chunking.scoring_prompt`): `SharedPrompt` (the
generation prompt, cache-friendly: the default) or `TextPrompt` (the research code's
text mode, kept for the bench's research-schedule row).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from atts.engines.base import Engine, Generation, Scoring
from atts.records import RequestRecord, Step
from atts.runtime.store import sample_key
from atts.seeds import request_seed
from atts.tasks.datasets import Question
from atts.tasks.grading import extract_boxed
from atts.tasks.prompts import REPLACEMENT_CHAR, Prompter, user_text

ROLES = ("draft", "target")


class ScoringPrompt(Protocol):
    """What the target scores a chunk after: ``prefix_ids(ctx, role)``."""

    name: str

    def prefix_ids(self, ctx: "SampleContext", role: str) -> list[int]: ...


@dataclass(frozen=True)
class SharedPrompt:
    """The scorer's generation prompt (chat template + kept ids): the radix cache serves
    it, since it is a prefix of the next generation prompt."""

    name: ClassVar[str] = "shared"

    def prefix_ids(self, ctx: "SampleContext", role: str) -> list[int]:
        return ctx.prefix_ids(role)


@dataclass(frozen=True)
class TextPrompt:
    """The research code's text mode: question and history as plain text, tokenized on
    their own (no prefix shared with generation)."""

    name: ClassVar[str] = "text"

    def prefix_ids(self, ctx: "SampleContext", role: str) -> list[int]:
        p = ctx.roles[role].prompter
        return p.encode(user_text(ctx.state.question, p.template) + "\n\n" + ctx.state.text)


SCORING_PROMPTS = {"shared": SharedPrompt, "text": TextPrompt}


def scoring_prompt_named(name: str | None) -> ScoringPrompt:
    """The strategy for a name ("shared", "text"; None: "shared")."""
    try:
        return SCORING_PROMPTS[name or "shared"]()
    except KeyError:
        raise ValueError(f"unknown scoring prompt {name!r}; known: {', '.join(SCORING_PROMPTS)}") from None


@dataclass
class Role:
    name: str
    engine: Engine
    prompter: Prompter
    temperature: float


@dataclass
class Segment:
    role: str
    text: str
    ids: dict[str, list[int]]  # tokenizer path -> ids
    finish: str
    held: int = 0  # the writer's last ids not in `text`: a multi-byte character the chunk cut (Prompter.decode_chunk)
    # tokenizer path -> how many of the view's last ids before this segment its ids replace
    # (a word a chunk boundary cut, re-encoded whole: `Prompter.encode_after`)
    drop: dict[str, int] = field(default_factory=dict)
    # tokenizer path -> how many of this segment's last ids (in that view) its scoring left
    # to the next chunk's (a word the chunk boundary cut: `Prompter.cut_word_ids`)
    unscored: dict[str, int] = field(default_factory=dict)


@dataclass
class SampleState:
    question: Question
    repeat: int
    segments: list[Segment] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    turn: int = 0
    status: str = "running"  # running | done | failed | truncated
    stop_reason: str | None = None
    error: str | None = None
    tokens: dict = field(default_factory=lambda: {"draft_generated": 0, "target_generated": 0, "target_scored": 0})
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def key(self) -> str:
        return sample_key(self.question.index, self.repeat)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def kept_tokens(self) -> int:
        return sum(len(next(iter(s.ids.values()))) for s in self.segments)


@dataclass(frozen=True)
class Chunking:
    stop: tuple[str, ...]
    max_tokens: int
    max_turns: int
    token_budget: int
    top_p: float = 1.0
    seed: int = 0
    # the target's scoring prompt, a strategy: `SharedPrompt` (the default) or
    # `TextPrompt`; a name ("shared" / "text") is turned into one
    scoring_prompt: "ScoringPrompt" = None
    # "calibration" | "evaluation": salts every request seed (issue 13 item 2, atts.seeds)
    phase: str = "evaluation"

    def __post_init__(self) -> None:
        sp = self.scoring_prompt
        object.__setattr__(self, "scoring_prompt", scoring_prompt_named(sp) if sp is None or isinstance(sp, str) else sp)


class SampleContext:
    """The operations a policy composes for one sample."""

    def __init__(self, state: SampleState, roles: dict[str, Role], chunking: Chunking):
        self.state = state
        self.roles = roles
        self.chunking = chunking
        self._prompt_ids: dict[str, list[int]] = {}
        self.carry: dict = {}  # a policy's per-sample state across turns (e.g. a pre-generated chunk)
        self._unscored: dict[int, tuple[str, int]] = {}  # id(chunk) -> (tokenizer, ids left unscored)

    # -- views of the history
    def _tok_key(self, role: str) -> str:
        return self.roles[role].prompter.tokenizer_path

    def _extend(self, ids: list[int], seg: Segment, role: str) -> None:
        """Append ``seg`` to ``role``'s view ``ids`` (in place): the writer's own ids, or
        its text re-encoded to follow ``ids`` (cached: the history before a kept segment
        never changes)."""
        k = self._tok_key(role)
        if k not in seg.ids:
            seg.ids[k], seg.drop[k] = self.roles[role].prompter.encode_after(ids, seg.text)
        del ids[len(ids) - seg.drop.get(k, 0):]
        ids += seg.ids[k]

    def prefix_ids(self, role: str) -> list[int]:
        if role not in self._prompt_ids:
            self._prompt_ids[role] = self.roles[role].prompter.prompt_ids(self.state.question)
        ids = list(self._prompt_ids[role])
        for seg in self.state.segments:
            self._extend(ids, seg, role)
        return ids

    # -- requests
    def request_ids(self, role: str, after: Generation | None = None) -> list[int]:
        """The prompt of ``role``'s next chunk: the kept history (and ``after``)."""
        ids = self.prefix_ids(role)
        if after is not None:
            ids = self.with_chunk(ids, after, role)[0]
        return ids

    async def generate(self, role: str, attempt: int = 0, after: Generation | None = None,
                       turn: int | None = None, max_tokens: int | None = None) -> Generation:
        """One chunk from ``role``, continuing the kept history (and ``after``, a chunk
        not yet kept: the append mode continues after the draft chunk; a pipelined policy
        drafts turn ``turn`` = this turn + 1 after it). ``max_tokens`` caps this chunk
        below the configured chunk size (look-aheads)."""
        r = self.roles[role]
        ids = self.request_ids(role, after)
        c = self.chunking
        turn = self.state.turn if turn is None else turn
        g = await r.engine.generate(
            ids, max_new_tokens=min(max_tokens or c.max_tokens, c.max_tokens), stop=list(c.stop),
            temperature=r.temperature, top_p=c.top_p,
            seed=request_seed(c.seed, self.state.question.id, self.state.repeat, turn, role, attempt, phase=c.phase))
        self.state.tokens[f"{role}_generated"] += g.stats.output_tokens
        return g

    def with_chunk(self, prefix: list[int], g: Generation, role: str) -> tuple[list[int], int]:
        """``prefix`` followed by chunk ``g`` as ``role`` sees it, and where the chunk's
        ids start: its own ids if it wrote them (or shares the writer's tokenizer), else
        the text re-encoded after ``prefix`` (a word the boundary cut is encoded whole,
        so the chunk may start a few ids early: `Prompter.encode_after`)."""
        if g.stats.role == role or self._tok_key(g.stats.role) == self._tok_key(role):
            return list(prefix) + list(g.token_ids), len(prefix)
        ids, drop = self.roles[role].prompter.encode_after(prefix, self.chunk_text(g)[0])
        start = len(prefix) - drop
        return list(prefix[:start]) + ids, start

    def chunk_text(self, g: Generation) -> tuple[str, int]:
        """``g``'s text as it is kept, and how many of its last ids it holds back: the
        server's text, unless that shows a multi-byte character cut at a chunk boundary
        (U+FFFD) or the last kept chunk by the same tokenizer held the start of one
        (`Prompter.decode_chunk`): then whole characters only, so the kept text
        round-trips and the other model never sees U+FFFD."""
        prev = self.state.segments[-1] if self.state.segments else None
        held: list[int] = []
        if prev is not None and prev.held and self._tok_key(prev.role) == self._tok_key(g.stats.role):
            held = prev.ids[self._tok_key(prev.role)][-prev.held:]
        if not held and REPLACEMENT_CHAR not in g.text:
            return g.text, 0
        return self.roles[g.stats.role].prompter.decode_chunk(g.token_ids, held)

    async def score(self, g: Generation, role: str = "target") -> Scoring | None:
        """``role``'s logprobs of chunk ``g`` after the kept history (the target's, or a
        model scoring itself); None for an empty chunk (the draft ended at once: nothing
        to judge)."""
        prefix = self.scoring_prefix_ids(role)
        ids, start = self.with_chunk(prefix, g, role)
        if not ids[start:]:
            return None
        k = self._tok_key(role)
        last = self.state.segments[-1] if self.state.segments else None
        owed = last.unscored.get(k, 0) if last is not None else 0
        start = min(start, len(prefix) - owed)  # the previous chunk's cut word, whole now
        chunk = ids[start:]
        if g.finish == "length" and self._tok_key(g.stats.role) != k:
            held = self.roles[role].prompter.cut_word_ids(chunk)  # scored whole with the next chunk
            chunk = chunk[:len(chunk) - held]
            self._unscored[id(g)] = (k, held)
        s = await self.roles[role].engine.score(ids[:start], chunk)
        self.state.tokens[f"{role}_scored"] = self.state.tokens.get(f"{role}_scored", 0) + len(chunk)
        return s

    def scoring_prefix_ids(self, role: str = "target") -> list[int]:
        return self.chunking.scoring_prompt.prefix_ids(self, role)

    # -- history and records
    def segment_of(self, g: Generation) -> Segment:
        text, held = self.chunk_text(g)
        seg = Segment(g.stats.role, text, {self._tok_key(g.stats.role): list(g.token_ids)}, g.finish, held)
        if id(g) in self._unscored:
            k, n = self._unscored[id(g)]
            seg.unscored[k] = n
        return seg

    def keep(self, g: Generation) -> None:
        self.state.segments.append(self.segment_of(g))

    def finished_if_kept(self, g: Generation) -> str | None:
        """Why the sample would be over if ``g`` ended this turn's kept chunks."""
        probe = dataclasses.replace(self.state, segments=self.state.segments + [self.segment_of(g)],
                                    turn=self.state.turn + 1)
        return finished_reason(probe, self.chunking)

    def log(self, g: Generation, *, kept: bool, attempt: int = 0, scoring: Scoring | None = None,
            decision=None, extra: dict | None = None) -> dict:
        """Record chunk ``g`` as a `Step` (its JSON dict is returned: a policy may add keys)."""
        st = Step(self.state.turn, attempt, g.stats.role, g.text, len(g.token_ids), g.finish, kept,
                  [RequestRecord.from_json(g.stats.as_dict())])
        if scoring is not None:
            st.ppl, st.mean_nll = scoring.ppl, scoring.mean_nll
            st.requests.append(RequestRecord.from_json(scoring.stats.as_dict()))
        if decision is not None:
            st.decided, st.p_value, st.group = True, decision.p_value, decision.group
            st.threshold = decision.threshold if math.isfinite(decision.threshold) else None  # inf: JSON null
            st.decision = "takeover" if decision.takeover else "accept"
        step = st.to_json()
        if extra:
            step.update(extra)
        self.state.steps.append(step)
        return step


def finished_reason(state: SampleState, chunking: Chunking) -> str | None:
    """Why the sample is over after this turn, or None to go on."""
    if state.segments and state.segments[-1].finish == "eos":
        return "eos"
    if extract_boxed(state.text) is not None:
        return "answer"
    if state.turn >= chunking.max_turns:
        return "max_turns"
    if state.kept_tokens >= chunking.token_budget:
        return "token_budget"
    return None
