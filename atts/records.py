"""The sample record: what `samples/<key>.json` holds, typed, and the predicates every
reader shares.

`SampleRecord.to_json()` writes exactly the keys the run directories have always held
(`from_json` reads them back, keys added later by readers such as ``answers`` from
`atts reextract` kept in ``extra``), so existing run directories load and resume. The
readers (runtime.summary, runtime.progress, analysis.report, analysis.grade,
analysis.stats, analysis.judge, analysis.reextract, commands.bench, commands.compare)
read the JSON dicts through the names here rather than re-spelling them:

- `COMPLETE`: the statuses of a sample that finished (``done``, ``truncated``): graded,
  counted, never rerun; ``failed`` samples are rerun on resume;
- `first_attempt_decision(step)`: a step is a calibrated gate decision of its turn (the
  first attempt of the turn, with a decision): the takeover rate's denominator.

Layer 0: imports nothing from atts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

DONE, TRUNCATED, FAILED, RUNNING = "done", "truncated", "failed", "running"
COMPLETE = frozenset({DONE, TRUNCATED})  # finished samples: graded, counted, not rerun
STATUSES = frozenset({DONE, TRUNCATED, FAILED})  # what a written record may hold


def is_complete(record: dict) -> bool:
    """Whether a record (JSON dict) is of a finished sample (`COMPLETE`)."""
    return record.get("status") in COMPLETE


def first_attempt_decision(step: dict) -> bool:
    """Whether a step (JSON dict) is its turn's calibrated decision: attempt 0 with a
    gate decision (resampled attempts and undecided chunks are not)."""
    return step.get("attempt") == 0 and bool(step.get("decision"))


def _known(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "extra")


@dataclass
class RequestRecord:
    """One logical request (`atts.engines.base.RequestStats.as_dict`)."""

    kind: str  # generate | score
    role: str
    submitted: float
    queue_s: float = 0.0
    service_s: float = 0.0
    attempts: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    url: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in _known(RequestRecord)} | self.extra

    @classmethod
    def from_json(cls, d: dict) -> "RequestRecord":
        known = _known(cls)
        return cls(**{k: d[k] for k in known if k in d}, extra={k: v for k, v in d.items() if k not in known})


_DECISION_KEYS = ("p_value", "threshold", "group", "decision")


@dataclass
class Step:
    """One chunk of a sample: who wrote it, whether it was kept, its requests, and (when
    scored) its perplexity and (when decided) the gate's p-value, threshold and verdict.
    Policy-specific keys (``pre_generated``, ``lookahead``, ...) are in ``extra``."""

    turn: int
    attempt: int
    role: str
    text: str
    n_tokens: int
    finish: str
    kept: bool
    requests: list[RequestRecord] = field(default_factory=list)
    ppl: float | None = None  # with mean_nll: present only for a scored chunk
    mean_nll: float | None = None
    decided: bool = False  # the four decision keys are present (threshold may be None: infinite)
    p_value: float | None = None
    threshold: float | None = None
    group: str | None = None
    decision: str | None = None  # takeover | accept
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"turn": self.turn, "attempt": self.attempt, "role": self.role, "text": self.text,
             "n_tokens": self.n_tokens, "finish": self.finish, "kept": self.kept,
             "requests": [r.to_json() for r in self.requests]}
        if self.ppl is not None:
            d["ppl"], d["mean_nll"] = self.ppl, self.mean_nll
        if self.decided:
            d |= {"p_value": self.p_value, "threshold": self.threshold, "group": self.group, "decision": self.decision}
        return d | self.extra

    @classmethod
    def from_json(cls, d: dict) -> "Step":
        base = ("turn", "attempt", "role", "text", "n_tokens", "finish", "kept")
        known = set(base) | {"requests", "ppl", "mean_nll", *_DECISION_KEYS}
        return cls(**{k: d.get(k) for k in base}, requests=[RequestRecord.from_json(r) for r in d.get("requests") or ()],
                   ppl=d.get("ppl"), mean_nll=d.get("mean_nll"), decided="decision" in d,
                   **{k: d.get(k) for k in _DECISION_KEYS},
                   extra={k: v for k, v in d.items() if k not in known})

    @property
    def first_attempt_decision(self) -> bool:
        return first_attempt_decision(self.to_json())


@dataclass
class TokenCounts:
    """A sample's token counters. The three every policy has, and the rest by name
    (``draft_wasted``, ``draft_cancelled`` of pipelining, ``target_judged`` of
    SpecReason) in ``other``, in the order they were first counted."""

    draft_generated: int = 0
    target_generated: int = 0
    target_scored: int = 0
    other: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"draft_generated": self.draft_generated, "target_generated": self.target_generated,
                "target_scored": self.target_scored} | self.other

    @classmethod
    def from_json(cls, d: dict) -> "TokenCounts":
        main = ("draft_generated", "target_generated", "target_scored")
        return cls(**{k: int(d.get(k, 0)) for k in main}, other={k: v for k, v in d.items() if k not in main})


@dataclass
class SampleRecord:
    """One finished (or failed) sample, as `samples/<key>.json` holds it."""

    key: str
    question_index: int
    question_id: str
    repeat: int
    policy: str
    status: str  # done | truncated | failed
    stop_reason: str | None
    error: str | None
    question: str
    gold: str | None
    kind: str
    answer: str | None
    correct: bool | None
    text: str
    turns: int
    tokens: TokenCounts
    steps: list[Step]
    started: float
    finished: float | None
    latency_s: float
    extra: dict = field(default_factory=dict)  # keys readers added later (answers, answers_replaced, ...)

    @property
    def complete(self) -> bool:
        return self.status in COMPLETE

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in _known(SampleRecord)}
        d["tokens"] = self.tokens.to_json()
        d["steps"] = [s.to_json() for s in self.steps]
        return d | self.extra

    @classmethod
    def from_json(cls, d: dict) -> "SampleRecord":
        known = _known(cls)
        vals = {k: d.get(k) for k in known}
        vals["tokens"] = TokenCounts.from_json(d.get("tokens") or {})
        vals["steps"] = [Step.from_json(s) for s in d.get("steps") or ()]
        return cls(**vals, extra={k: v for k, v in d.items() if k not in known})
