"""Schedules: in what order and how many samples of a run go at once. `run_all` takes
one; it does not choose.

- `Concurrent(max_in_flight)`: every sample is its own task, all started at once and
  bounded only by each role's request concurrency, no barrier, no question ordering.
  ``max_in_flight`` (config ``max_in_flight``, flag ``--max-in-flight``) caps how many
  samples run at once: a sample beyond the cap waits for a free slot before it starts
  (it never starts early and then waits), so a long run's memory (histories, pending
  requests) stays bounded.
- `QuestionGroups()`: the research code's schedule: all samples of a question finish
  before the next question starts. Kept only for the bench's ``research_schedule`` row,
  to measure what that barrier costs.

A schedule's ``run(todo, questions, one)`` awaits ``one(question, repeat)`` for every
item of ``todo``; when one raises (a server down, Ctrl-C) it cancels every other sample
before anything is torn down, so that none is recorded as failed on the way out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, ClassVar, Protocol

from atts.tasks.datasets import Question

Item = tuple[Question, int]  # (question, repeat)
RunOne = Callable[[Question, int], Awaitable[None]]


class Schedule(Protocol):
    name: str

    async def run(self, todo: list[Item], questions: list[Question], one: RunOne) -> None: ...


async def run_group(items: list[Item], one: RunOne, slots: asyncio.Semaphore | None = None) -> None:
    """Every item as a task (each waits for one of ``slots`` first, if given); on an
    exception, every other task is cancelled and awaited before it propagates."""

    async def gated(q: Question, r: int) -> None:
        if slots is None:
            return await one(q, r)
        async with slots:
            await one(q, r)

    tasks = [asyncio.ensure_future(gated(q, r)) for q, r in items]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


@dataclass(frozen=True)
class Concurrent:
    max_in_flight: int | None = None  # None: no cap beyond the engines' request limits
    name: ClassVar[str] = "concurrent"

    def __post_init__(self) -> None:
        if self.max_in_flight is not None and self.max_in_flight <= 0:
            raise ValueError(f"max_in_flight: must be > 0, got {self.max_in_flight}")

    async def run(self, todo: list[Item], questions: list[Question], one: RunOne) -> None:
        slots = asyncio.Semaphore(self.max_in_flight) if self.max_in_flight else None
        await run_group(todo, one, slots)


@dataclass(frozen=True)
class QuestionGroups:
    name: ClassVar[str] = "question_groups"

    async def run(self, todo: list[Item], questions: list[Question], one: RunOne) -> None:
        for q in questions:
            await run_group([(q2, r) for q2, r in todo if q2 is q], one)


SCHEDULES = {"concurrent": Concurrent, "question_groups": QuestionGroups}


def schedule_named(name: str, max_in_flight: int | None = None) -> Schedule:
    """The schedule for a name ("concurrent", "question_groups"); ``max_in_flight`` caps
    the concurrent one."""
    if name == "concurrent":
        return Concurrent(max_in_flight)
    if name == "question_groups":
        return QuestionGroups()
    raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
