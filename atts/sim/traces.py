"""Recorded runs, in the three forms `atts simulate` replays, as one `Trace`.

- an atts run directory (``manifest.json`` + ``samples/*.json``): every step with role,
  text, attempt, PPL, decision, finish; the run's calibration file when it still exists;
- the shared research traces (``*.jsonl.gz`` / ``*.jsonl``, or a directory holding one):
  ``steps`` of model ``draft`` / ``target_score`` / ``target_generate``; the calibration
  array beside it (``calibration_ppls_*.npy``) when there;
- a research-code results directory of ``problem_XXXX.json`` files: ``full_history``
  entries ``small`` / ``eval_ppl`` / ``eval_generate`` (text in ``output``),
  ``duration_seconds``; sample ``problem_index`` belongs to question
  ``problem_index // samples_per_question`` (16 in the research code).

The research forms record no finish reason: a chunk after which the trace goes on is
replayed as cut at ``max_tokens`` (``length``), the sample's last chunk as ``eos`` (the
research code has no stop string; its samples end on an end of sequence or the turn cap).
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atts.method.conformal import CalibrationError, CalibrationFile


class TraceError(ValueError):
    """Unreadable or unknown trace input (a user error)."""


@dataclass
class Step:
    """One recorded request outcome: a chunk (``generate``) or a PPL (``score``)."""

    turn: int
    role: str  # draft | target
    kind: str  # generate | score
    attempt: int = 0
    text: str = ""
    ppl: float | None = None
    finish: str = "length"
    decision: str | None = None  # takeover | accept (atts runs; research: implied by what follows)
    p_value: float | None = None


@dataclass
class Sample:
    question_index: int
    repeat: int
    question: str
    steps: list[Step]
    duration_s: float | None = None
    status: str = "done"
    question_id: str = ""  # the recorded run's id (seeds and per-question calibration use it)
    gold: str = ""

    def __post_init__(self):
        self.question_id = self.question_id or f"q{self.question_index}"
        self.key = f"q{self.question_index:05d}-r{self.repeat:03d}"  # atts.store.sample_key

    @property
    def turns(self) -> int:
        return 1 + max((s.turn for s in self.steps), default=-1)


@dataclass
class Trace:
    form: str  # atts-run | research-traces | research-problems
    source: str
    samples: list[Sample]
    calibration: list[float] | None = None  # marginal calibration scores, when known
    calibration_file: CalibrationFile | None = None  # an atts run's own calibration
    policy: dict = field(default_factory=dict)  # the recorded run's policy section, when known
    chunking: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # an atts run's whole config
    real_wall_seconds: float | None = None
    schedule: str | None = None  # how the recorded run was scheduled, when known
    notes: list[str] = field(default_factory=list)

    @property
    def samples_per_question(self) -> int:
        return max(s.repeat for s in self.samples) + 1 if self.samples else 0


# ---------------------------------------------------------------- research forms

_MODEL = {"draft": ("draft", "generate"), "small": ("draft", "generate"),
          "target_score": ("target", "score"), "eval_ppl": ("target", "score"),
          "target_generate": ("target", "generate"), "eval_generate": ("target", "generate")}


def research_steps(entries: list[dict]) -> list[Step]:
    """Steps of a research sample (either research format). Turns come from ``turn``
    when recorded, else a draft chunk opens a new turn. Finish reasons: see module docs;
    decisions: a scored turn with a target generation was a takeover."""
    steps: list[Step] = []
    turn = -1
    for e in entries:
        m = e.get("model")
        if m not in _MODEL:
            continue
        role, kind = _MODEL[m]
        if "turn" in e and e["turn"] is not None:
            turn = int(e["turn"])
        elif role == "draft":
            turn += 1
        text = e.get("text", e.get("output")) if kind == "generate" else None
        ppl = e.get("ppl") if kind == "score" else None
        steps.append(Step(max(turn, 0), role, kind, 0, str(text or ""), None if ppl is None else float(ppl)))
    gens = [s for s in steps if s.kind == "generate"]
    for s in gens[:-1]:
        s.finish = "length"
    if gens:
        gens[-1].finish = "eos"
    taken = {s.turn for s in steps if s.role == "target" and s.kind == "generate"}
    for s in steps:
        if s.kind == "score":
            s.decision = "takeover" if s.turn in taken else "accept"
    return steps


def _calibration_beside(d: Path, notes: list[str]) -> list[float] | None:
    cands = sorted(d.glob("calibration_ppls_*.npy")) + sorted(d.glob("ppls_*.npy"))
    if not cands:
        return None
    arr = np.load(cands[0]).astype(float).ravel()
    notes.append(f"calibration: {cands[0].name} ({arr.size} PPLs)")
    return arr.tolist()


def load_research_traces(p: Path) -> Trace:
    files = [p] if p.is_file() else sorted(p.glob("*.jsonl.gz")) + sorted(p.glob("*.jsonl"))
    if not files:
        raise TraceError(f"{p}: no .jsonl(.gz) traces file")
    f = files[0]
    opener = gzip.open if f.suffix == ".gz" else open
    try:
        with opener(f, "rt", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    except (OSError, json.JSONDecodeError, EOFError) as e:
        raise TraceError(f"{f}: not a JSON Lines traces file ({e})") from None
    notes: list[str] = []
    samples = []
    seen: dict[int, int] = {}
    for i, r in sorted(enumerate(rows), key=lambda ir: int(ir[1].get("sample", ir[0]))):
        idx = int(r.get("sample", i))
        q = int(r.get("question_index", idx // 16))
        seen[q] = seen.get(q, -1) + 1  # repeats of a question in sample order
        samples.append(Sample(q, seen[q], str(r.get("question") or ""), research_steps(r.get("steps") or []),
                              _opt_float(r.get("duration_seconds"))))
    return Trace("research-traces", str(f), samples, _calibration_beside(f.parent, notes),
                 schedule="question_groups", notes=notes)


def load_research_problems(d: Path, samples_per_question: int = 16) -> Trace:
    out = []
    for p in sorted(d.glob("problem_*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TraceError(f"{p}: not readable JSON ({e})") from None
        m = re.search(r"problem_(\d+)", p.stem)
        idx = int(row.get("problem_index", m.group(1) if m else len(out)))
        out.append(Sample(idx // samples_per_question, idx % samples_per_question, str(row.get("question") or ""),
                          research_steps(row.get("full_history") or []), _opt_float(row.get("duration_seconds"))))
    notes: list[str] = []
    return Trace("research-problems", str(d), out, _calibration_beside(d, notes), schedule="question_groups",
                 notes=notes)


# ---------------------------------------------------------------- atts runs


def _run_steps(rec: dict) -> list[Step]:
    steps = []
    for s in rec.get("steps") or []:
        role = s.get("role")
        if role not in ("draft", "target"):
            continue
        turn, attempt = int(s.get("turn", 0)), int(s.get("attempt", 0))
        if s.get("recap"):  # an injected text (spec_thinking): no request
            continue
        d, pv = s.get("decision"), s.get("p_value")
        steps.append(Step(turn, role, "generate", attempt, str(s.get("text") or ""),
                          finish=str(s.get("finish") or "length"), decision=d, p_value=pv))
        if s.get("ppl") is not None:  # the target scored it (atts_self: the writer itself)
            scorer = role if str(rec.get("policy", "")).startswith("atts_self") else "target"
            steps.append(Step(turn, scorer, "score", attempt, ppl=float(s["ppl"]), decision=d, p_value=pv))
    return steps


def load_atts_run(d: Path) -> Trace:
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TraceError(f"{d}/manifest.json: not readable ({e})") from None
    recs = []
    for p in sorted((d / "samples").glob("q*-r*.json")):
        try:
            recs.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if not recs:
        raise TraceError(f"{d}: an atts run without sample records")
    notes: list[str] = []
    samples = [Sample(int(r["question_index"]), int(r["repeat"]), str(r.get("question") or ""), _run_steps(r),
                      _opt_float(r.get("latency_s")), str(r.get("status") or "done"), str(r.get("question_id") or ""),
                      str(r.get("gold") or "")) for r in recs]
    cfg = manifest.get("config") or {}
    cal_file = None
    cal = manifest.get("calibration") or {}
    if cal.get("path"):
        cp = Path(cal["path"])
        if not cp.is_absolute() and not cp.exists():
            cp = d / cp.name
        try:
            cal_file = CalibrationFile.load(cp)
            notes.append(f"calibration: {cp} ({cal_file.grouping})")
        except CalibrationError as e:
            notes.append(f"calibration of the run not loaded ({e}); pass --calibration")
    wall = None
    try:
        wall = float(json.loads((d / "summary.json").read_text()).get("wall_seconds"))
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        pass
    return Trace("atts-run", str(d), samples, calibration_file=cal_file, policy=dict(cfg.get("policy") or {}),
                 chunking=dict(cfg.get("chunking") or {}), sampling=dict(cfg.get("sampling") or {}), config=cfg,
                 real_wall_seconds=wall, schedule="concurrent", notes=notes)


def load_trace(path: str | Path, samples_per_question: int = 16) -> Trace:
    """Any of the three forms (see module docs)."""
    p = Path(path)
    if not p.exists():
        raise TraceError(f"{p}: no such file or directory")
    if p.is_dir() and (p / "manifest.json").exists():
        t = load_atts_run(p)
    elif p.is_dir() and any(p.glob("problem_*.json")):
        t = load_research_problems(p, samples_per_question)
    elif p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")) or p.is_dir() and (
            any(p.glob("*.jsonl.gz")) or any(p.glob("*.jsonl"))):
        t = load_research_traces(p)
    else:
        raise TraceError(f"{p}: neither an atts run (manifest.json), nor problem_XXXX.json files, "
                         "nor a .jsonl(.gz) traces file")
    if not t.samples:
        raise TraceError(f"{p}: no samples")
    t.samples.sort(key=lambda s: (s.question_index, s.repeat))
    return t


def _opt_float(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
