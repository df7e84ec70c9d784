"""The runner: runs a run's samples and writes each finished one. A policy
(`atts.method.policies`) decides what happens in a turn, on the sample's
`atts.runtime.context.SampleContext`; the schedule (`atts.runtime.schedule`: which
samples go at once), the scoring prompt (`Chunking.scoring_prompt`) and the progress
display (`atts.runtime.progress`) are passed in, not built in. The machinery here runs
the turns, grades each finished sample and writes it atomically as its
`atts.records.SampleRecord`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from atts.engines.base import ContextOverflow, EngineError, ServerDown
from atts.records import COMPLETE, SampleRecord, TokenCounts
from atts.runtime.context import (ROLES, Chunking, Role, SampleContext, SampleState, ScoringPrompt,  # noqa: F401
                                  Segment, SharedPrompt, TextPrompt, finished_reason, scoring_prompt_named)
from atts.runtime.progress import Progress, ProgressSink, Silent
from atts.runtime.schedule import Concurrent, QuestionGroups, Schedule, schedule_named  # noqa: F401
from atts.runtime.store import RunStore, sample_key
from atts.seeds import request_seed  # noqa: F401  (re-exported: policies and sims import it from here)
from atts.tasks.datasets import Question
from atts.tasks.grading import Grader, extract_answer

# moved names stay importable from here: `from atts.runtime.runner import SampleContext` keeps working
__all__ = ["COMPLETE", "ROLES", "Chunking", "Concurrent", "Progress", "QuestionGroups", "Role", "SampleContext",
           "SampleState", "Segment", "finished_reason", "request_seed", "run_all", "run_sample", "sample_record"]


def sample_record(state: SampleState, policy_name: str, correct: bool | None) -> dict:
    """The JSON of the finished sample's `atts.records.SampleRecord`."""
    q = state.question
    answer = extract_answer(state.text, q.kind)
    return SampleRecord(
        key=state.key, question_index=q.index, question_id=q.id, repeat=state.repeat,
        policy=policy_name, status=state.status, stop_reason=state.stop_reason, error=state.error,
        question=q.problem, gold=q.answer, kind=q.kind, answer=answer, correct=correct,
        text=state.text, turns=state.turn, tokens=TokenCounts.from_json(state.tokens), steps=[],
        started=state.started, finished=state.finished,
        latency_s=(state.finished or time.time()) - state.started,
    ).to_json() | {"steps": state.steps}  # the steps as logged (policies may have added keys)


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


async def run_all(policy, questions: list[Question], samples_per_question: int, roles: dict[str, Role],
                  chunking: Chunking, store: RunStore, grader: Grader,
                  progress: bool | Callable[[int], ProgressSink] = True,
                  schedule: Schedule | str = Concurrent()) -> dict:
    """Run every sample not yet complete on disk. Returns counts for this invocation.

    ``schedule``: a `atts.runtime.schedule` strategy (`Concurrent(max_in_flight)`, the
    default without a cap, or `QuestionGroups()`); a name is accepted too.
    ``progress``: a factory called with the number of samples to run, returning what is
    told of each finished record (`atts.runtime.progress.bar`); True: the default bar."""
    if isinstance(schedule, str):
        schedule = schedule_named(schedule)
    done = {k for k, r in store.completed().items() if r.get("status") in COMPLETE}
    todo = [(q, r) for q in questions for r in range(samples_per_question) if sample_key(q.index, r) not in done]
    if progress is True:
        sink = Progress(len(todo), policy.name)
    elif callable(progress):
        sink = progress(len(todo))
    else:
        sink = Silent()
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
        sink.update(rec)

    policy.begin(todo)  # the samples this invocation runs (those done on disk take no part)
    t0 = time.perf_counter()
    try:
        await schedule.run(todo, questions, one)
    finally:
        sink.close()
    return {"ran": len(todo), "skipped": len(done), "wall_seconds": time.perf_counter() - t0}
