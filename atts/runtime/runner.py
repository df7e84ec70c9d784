"""The runner: every sample (question x repeat) is its own asyncio task, all started at
once and bounded only by each role's concurrency limit. No barrier, no question-group
ordering. A policy (`atts.policies`) decides what happens in a turn; the machinery here
does the requests, keeps the history, records every step and writes each finished
sample atomically.

History: a sample's reasoning is a list of `Segment`s. A segment keeps the token ids of
the model that wrote it (its exact output) and, lazily, its encoding for the other
model's tokenizer, so each model's prompt is ``chat_template(question) + segments``:
chunks concatenate exactly, chunk boundaries are token boundaries, and the target's
scoring prompt is a prefix of its generation prompt (SGLang's radix cache reuses it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import sys
import time
from dataclasses import dataclass, field

from atts.tasks.datasets import Question
from atts.engines.sglang import ContextOverflow, EngineError, Generation, Scoring, ServerDown, SGLangEngine
from atts.tasks.grading import Grader, extract_answer, extract_boxed
from atts.tasks.prompts import REPLACEMENT_CHAR, Prompter, user_text
from atts.runtime.store import RunStore, sample_key

ROLES = ("draft", "target")


@dataclass
class Role:
    name: str
    engine: SGLangEngine
    prompter: Prompter
    temperature: float


@dataclass
class Segment:
    role: str
    text: str
    ids: dict[str, list[int]]  # tokenizer path -> ids
    finish: str
    held: int = 0  # the writer's last ids not in `text`: a multi-byte character the chunk cut (Prompter.decode_chunk)


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
    # the target's scoring prompt: "shared" = its generation prompt (chat template + kept
    # ids), so the radix cache serves it; "text" = the research code's text mode (question
    # and history as plain text, tokenized on their own: no prefix shared with generation)
    scoring_prompt: str = "shared"


def request_seed(base: int, *parts) -> int:
    h = hashlib.sha256(repr((base, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


class SampleContext:
    """The operations a policy composes for one sample."""

    def __init__(self, state: SampleState, roles: dict[str, Role], chunking: Chunking):
        self.state = state
        self.roles = roles
        self.chunking = chunking
        self._prompt_ids: dict[str, list[int]] = {}
        self.carry: dict = {}  # a policy's per-sample state across turns (e.g. a pre-generated chunk)

    # -- views of the history
    def _tok_key(self, role: str) -> str:
        return self.roles[role].prompter.tokenizer_path

    def segment_ids(self, seg: Segment, role: str) -> list[int]:
        k = self._tok_key(role)
        if k not in seg.ids:
            seg.ids[k] = self.roles[role].prompter.encode(seg.text)
        return seg.ids[k]

    def prefix_ids(self, role: str) -> list[int]:
        if role not in self._prompt_ids:
            self._prompt_ids[role] = self.roles[role].prompter.prompt_ids(self.state.question)
        ids = list(self._prompt_ids[role])
        for seg in self.state.segments:
            ids += self.segment_ids(seg, role)
        return ids

    # -- requests
    def request_ids(self, role: str, after: Generation | None = None) -> list[int]:
        """The prompt of ``role``'s next chunk: the kept history (and ``after``)."""
        ids = self.prefix_ids(role)
        if after is not None:
            ids += self.chunk_ids_for(after, role)
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
            seed=request_seed(c.seed, self.state.question.id, self.state.repeat, turn, role, attempt))
        self.state.tokens[f"{role}_generated"] += g.stats.output_tokens
        return g

    def chunk_ids_for(self, g: Generation, role: str) -> list[int]:
        """``g``'s tokens as ``role`` sees them: its own ids if it wrote them (or shares the
        writer's tokenizer), else the text re-encoded."""
        if g.stats.role == role or self._tok_key(g.stats.role) == self._tok_key(role):
            return list(g.token_ids)
        return self.roles[role].prompter.encode(self.chunk_text(g)[0])

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
        chunk = self.chunk_ids_for(g, role)
        if not chunk:
            return None
        s = await self.roles[role].engine.score(self.scoring_prefix_ids(role), chunk)
        self.state.tokens[f"{role}_scored"] = self.state.tokens.get(f"{role}_scored", 0) + len(chunk)
        return s

    def scoring_prefix_ids(self, role: str = "target") -> list[int]:
        if self.chunking.scoring_prompt == "text":
            p = self.roles[role].prompter
            return p.encode(user_text(self.state.question, p.template) + "\n\n" + self.state.text)
        return self.prefix_ids(role)

    # -- history and records
    def segment_of(self, g: Generation) -> Segment:
        text, held = self.chunk_text(g)
        return Segment(g.stats.role, text, {self._tok_key(g.stats.role): list(g.token_ids)}, g.finish, held)

    def keep(self, g: Generation) -> None:
        self.state.segments.append(self.segment_of(g))

    def finished_if_kept(self, g: Generation) -> str | None:
        """Why the sample would be over if ``g`` ended this turn's kept chunks."""
        probe = dataclasses.replace(self.state, segments=self.state.segments + [self.segment_of(g)],
                                    turn=self.state.turn + 1)
        return finished_reason(probe, self.chunking)

    def log(self, g: Generation, *, kept: bool, attempt: int = 0, scoring: Scoring | None = None,
            decision=None, extra: dict | None = None) -> dict:
        step = {"turn": self.state.turn, "attempt": attempt, "role": g.stats.role, "text": g.text,
                "n_tokens": len(g.token_ids), "finish": g.finish, "kept": kept,
                "requests": [g.stats.as_dict()]}
        if scoring is not None:
            step["ppl"] = scoring.ppl
            step["mean_nll"] = scoring.mean_nll
            step["requests"].append(scoring.stats.as_dict())
        if decision is not None:
            step["p_value"] = decision.p_value
            step["threshold"] = decision.threshold if math.isfinite(decision.threshold) else None
            step["group"] = decision.group
            step["decision"] = "takeover" if decision.takeover else "accept"
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


def sample_record(state: SampleState, policy_name: str, correct: bool | None) -> dict:
    q = state.question
    answer = extract_answer(state.text, q.kind)
    return {
        "key": state.key, "question_index": q.index, "question_id": q.id, "repeat": state.repeat,
        "policy": policy_name, "status": state.status, "stop_reason": state.stop_reason, "error": state.error,
        "question": q.problem, "gold": q.answer, "kind": q.kind, "answer": answer, "correct": correct,
        "text": state.text, "turns": state.turn, "tokens": state.tokens, "steps": state.steps,
        "started": state.started, "finished": state.finished,
        "latency_s": (state.finished or time.time()) - state.started,
    }


async def run_sample(policy, state: SampleState, roles: dict[str, Role], chunking: Chunking) -> SampleState:
    ctx = SampleContext(state, roles, chunking)
    try:
        while state.status == "running":
            await policy.turn(ctx)
            state.turn += 1
            reason = finished_reason(state, chunking)
            if reason:
                state.status, state.stop_reason = "done", reason
    except ContextOverflow as e:
        state.status, state.stop_reason, state.error = "truncated", "context_overflow", str(e)
    except ServerDown:
        raise  # not this sample's fault: run_all stops the run, the sample stays missing
    except EngineError as e:
        state.status, state.error = "failed", str(e)
    state.finished = time.time()
    return state


COMPLETE = ("done", "truncated")


class Progress:
    """tqdm bar: samples done, running accuracy, takeover rate."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        from tqdm.auto import tqdm  # a widget in notebooks, text elsewhere

        self.bar = tqdm(total=total, desc=desc, unit="sample", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5)
        self.n = self.correct = self.failed = self.decisions = self.takeovers = 0

    def update(self, rec: dict) -> None:
        self.n += 1
        self.correct += bool(rec.get("correct"))
        self.failed += rec["status"] == "failed"
        for s in rec["steps"]:
            if s.get("attempt") == 0 and s.get("decision"):
                self.decisions += 1
                self.takeovers += s["decision"] == "takeover"
        post = {"acc": f"{self.correct / self.n:.3f}"}
        if self.decisions:
            post["takeover"] = f"{self.takeovers / self.decisions:.3f}"
        if self.failed:
            post["failed"] = self.failed
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


async def run_all(policy, questions: list[Question], samples_per_question: int, roles: dict[str, Role],
                  chunking: Chunking, store: RunStore, grader: Grader, progress: bool = True,
                  schedule: str = "concurrent") -> dict:
    """Run every sample not yet complete on disk. Returns counts for this invocation.
    ``schedule``: "concurrent" (every sample at once, no barrier) or "question_groups"
    (the research code's: all samples of a question finish before the next question
    starts; kept only to measure what that costs)."""
    if schedule not in ("concurrent", "question_groups"):
        raise ValueError(f"unknown schedule {schedule!r}")
    done = {k for k, r in store.completed().items() if r.get("status") in COMPLETE}
    todo = [(q, r) for q in questions for r in range(samples_per_question) if sample_key(q.index, r) not in done]
    bar = Progress(len(todo), f"{policy.name}", progress)
    loop = asyncio.get_running_loop()

    async def one(q: Question, r: int) -> None:
        try:
            state = await run_sample(policy, SampleState(q, r), roles, chunking)
        finally:
            policy.on_sample_end(q, r)  # e.g. leaves a synchronous policy's per-question barrier
        answer = extract_answer(state.text, q.kind)
        correct = None
        if state.status in COMPLETE:
            correct = (await loop.run_in_executor(None, grader.grade, [(answer, q.answer, q.kind)]))[0]
        rec = sample_record(state, policy.name, correct)
        await loop.run_in_executor(None, store.write_sample, rec)  # an atomic write fsyncs: off the event loop
        bar.update(rec)

    policy.begin(todo)  # the samples this invocation runs (those done on disk take no part)
    t0 = time.perf_counter()
    async def run_group(items) -> None:
        tasks = [asyncio.ensure_future(one(q, r)) for q, r in items]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # a server is down (or Ctrl-C): stop every other sample before anything else is
            # torn down, so that none is recorded as failed on the way out
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # "concurrent": one group of every sample; "question_groups": a question at a time
    groups = [todo] if schedule == "concurrent" else [[(q2, r) for q2, r in todo if q2 is q] for q in questions]
    try:
        for items in groups:
            await run_group(items)
    finally:
        bar.close()
    return {"ran": len(todo), "skipped": len(done), "wall_seconds": time.perf_counter() - t0}
