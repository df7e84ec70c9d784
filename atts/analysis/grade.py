"""``python -m atts.compute_accuracy DIR --dataset NAME --samples-per-question K
[--answer-field F] [--output FILE.json]`` (also ``atts grade``).

Grades a set of samples with our grader (math-verify in worker processes,
`atts.grading`) and writes pass@1, maj@K and pass@K. DIR is one of:

- one of our runs (``manifest.json`` + ``samples/``); answer fields: ``answer`` (our
  extraction, the default), ``ours`` (the same extraction redone on ``text``) and every
  LLM re-extraction stored beside it (``answers.<name>``, e.g. ``llm``; see
  `atts.reextract`); ``--dataset`` and ``-K`` default to the run's own;
- a directory of the research code's ``problem_XXXX.json`` files (one per sample, sample
  ``idx`` belongs to question ``idx // K``); answer fields ``final_answer`` (the default:
  the field the research code scored), ``final_answer_regex``, ``final_answer_llm`` when
  present, and ``ours`` (our extraction from the history's generated text);
- the research traces as JSON Lines (``*.jsonl`` / ``*.jsonl.gz``, or a directory holding
  one), the format of ``../shared/reference/atts_traces``. They carry no
  ``final_answer``: the research code's re-extraction had overwritten it with the LLM's
  answer, so ``final_answer`` reads ``final_answer_llm`` there.

Gold answers come from the record (our runs) or from the dataset, matched on the
question text. Besides the chosen field, every other available field is graded too, and
the output lists how often its verdict agrees with the chosen field's.

    pass@1 = mean over samples of correct
    maj@K  = mean over questions of [the most common normalised answer is correct]
    pass@K = mean over questions of [any of its K samples is correct]
"""

from __future__ import annotations

import gzip
import importlib
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from atts.errors import GradeError, UserError, run_guarded
from atts.runtime.store import RunStore, atomic_write_json
from atts.tasks.datasets import load_questions
from atts.tasks.grading import Grader, accuracy, extract_answer
from atts.records import is_complete

# research history entry roles whose text is part of the answer (the PPL scoring is not)
_GENERATED = {"small", "eval_generate", "draft", "target_generate"}


@dataclass
class Sample:
    """One sample from any source, reduced to what grading needs."""

    group: int                      # question group (samples of one question share it)
    key: str                        # stable id for per-sample output
    question: str | None
    gold: str | None
    kind: str
    answers: dict[str, str | None]  # answer field -> answer
    latency_s: float | None = None


@dataclass
class Source:
    format: str                     # atts-run | research-problems | research-traces
    path: Path
    samples: list[Sample]
    default_field: str
    dataset: str | None
    samples_per_question: int | None


# ---------------------------------------------------------------- readers

def read_trace_rows(path: str | Path) -> list[dict]:
    """The research traces file (JSON Lines, gzip or not): one dict per sample."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def trace_text(row: dict) -> str:
    """The generated reasoning of a research sample: every draft and target-generated
    chunk, in order (the scoring entries carry no text). Works on both research formats:
    traces (``steps``: model, text) and problem files (``full_history``: model, output)."""
    steps = row.get("steps") if "steps" in row else row.get("full_history") or []
    return "".join(str(s.get("text", s.get("output")) or "") for s in steps if s.get("model") in _GENERATED)


def _research_sample(row: dict, idx: int, k: int) -> Sample:
    answers = {f: row[f] for f in ("final_answer", "final_answer_regex", "final_answer_llm") if f in row}
    if "final_answer" not in answers and "final_answer_llm" in answers:
        answers["final_answer"] = answers["final_answer_llm"]  # what re_extract had overwritten it with
    answers["ours"] = extract_answer(trace_text(row))
    return Sample(group=idx // k, key=f"sample-{idx:05d}", question=row.get("question"), gold=None, kind="math",
                  answers=answers, latency_s=_float(row.get("duration_seconds")))


def _float(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _read_problem_dir(d: Path, k: int) -> list[Sample]:
    out = []
    for p in sorted(d.glob("problem_*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise GradeError(f"{p}: not readable JSON ({e})") from None
        m = re.search(r"problem_(\d+)", p.stem)
        idx = int(row.get("problem_index", m.group(1)))
        out.append(_research_sample(row, idx, k))
    return out


def _read_traces(p: Path, k: int) -> list[Sample]:
    rows = read_trace_rows(p)
    return [_research_sample(r, int(r.get("sample", i)), k) for i, r in enumerate(rows)]


def _read_run(d: Path) -> tuple[list[Sample], dict]:
    manifest = json.loads((d / "manifest.json").read_text())
    out = []
    for key, rec in sorted(RunStore(d).completed().items()):
        if not is_complete(rec):
            continue
        answers = {"answer": rec.get("answer"), "ours": extract_answer(rec.get("text"), rec.get("kind", "math"))}
        for name, a in (rec.get("answers") or {}).items():
            if isinstance(a, dict):
                answers[name] = a.get("answer")
        out.append(Sample(group=rec["question_index"], key=key, question=rec.get("question"), gold=rec.get("gold"),
                          kind=rec.get("kind", "math"), answers=answers, latency_s=rec.get("latency_s")))
    return out, manifest


def load_source(path: str | Path, samples_per_question: int | None) -> Source:
    """Detect the format of ``path`` and read its samples."""
    p = Path(path)
    if not p.exists():
        raise GradeError(f"{p}: no such file or directory")
    if p.is_dir() and (p / "manifest.json").is_file():
        samples, manifest = _read_run(p)
        cfg = manifest.get("config") or {}
        return Source("atts-run", p, samples, "answer", (cfg.get("dataset") or {}).get("name"),
                      manifest.get("samples_per_question"))
    traces = [p] if p.is_file() else sorted([*p.glob("*.jsonl"), *p.glob("*.jsonl.gz")])
    problems = sorted(p.glob("problem_*.json")) if p.is_dir() else []
    if not samples_per_question and (problems or traces):
        raise GradeError(f"{p}: research results need --samples-per-question K (sample idx belongs to question idx // K)")
    if problems:
        return Source("research-problems", p, _read_problem_dir(p, samples_per_question), "final_answer", None,
                      samples_per_question)
    if len(traces) == 1:
        return Source("research-traces", traces[0], _read_traces(traces[0], samples_per_question), "final_answer",
                      None, samples_per_question)
    if len(traces) > 1:
        raise GradeError(f"{p}: several .jsonl files ({', '.join(t.name for t in traces)}); name one")
    raise GradeError(f"{p}: neither an atts run (manifest.json), nor problem_XXXX.json files, nor a .jsonl(.gz) traces file")


def _norm_q(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


def attach_gold(src: Source, dataset: str | None, data_dir: str | None = None) -> None:
    """Fill in gold answers of research samples by matching question text in the dataset,
    and check that each question group holds one question (else K is wrong)."""

    need = [s for s in src.samples if s.gold is None]
    if need:
        if not dataset:
            raise GradeError(f"{src.path}: research results need --dataset NAME for the gold answers")
        qs = load_questions(dataset, data_dir=data_dir)
        gold = {_norm_q(q.problem): (q.answer, q.kind) for q in qs}
        missing = 0
        for s in need:
            hit = gold.get(_norm_q(s.question or ""))
            if hit is None:
                missing += 1
                continue
            s.gold, s.kind = hit
        if missing:
            raise GradeError(f"{missing} of {len(need)} samples' questions are not in dataset {dataset!r} "
                             "(wrong --dataset?)")
    by_group = defaultdict(set)
    for s in src.samples:
        by_group[s.group].add(_norm_q(s.question or ""))
    bad = [g for g, qs in by_group.items() if len(qs) > 1]
    if bad:
        raise GradeError(f"question group {bad[0]} mixes {len(by_group[bad[0]])} different questions: "
                         f"is --samples-per-question right?")


# ---------------------------------------------------------------- grading

def grade_fields(samples: list[Sample], fields: list[str], workers: int = 2) -> dict[str, list[bool]]:
    """math-verify verdict of every sample's answer in each field."""
    with Grader(workers) as g:
        return {f: g.grade([(s.answers.get(f), s.gold, s.kind) for s in samples]) for f in fields}


def metrics(samples: list[Sample], field_name: str, verdicts: list[bool], k: int | None) -> dict:
    by_q = defaultdict(list)
    for s, c in zip(samples, verdicts):
        by_q[s.group].append((s.answers.get(field_name), c))
    acc = accuracy(by_q)
    k = k or max((len(v) for v in by_q.values()), default=0)
    return {"pass@1": acc.pass_at_1, f"maj@{k}": acc.maj_at_k, f"pass@{k}": acc.pass_at_k,
            "maj@k": acc.maj_at_k, "pass@k": acc.pass_at_k, "n_questions": acc.n_questions,
            "n_samples": acc.n_samples, "n_no_answer": sum(s.answers.get(field_name) in (None, "") for s in samples)}


def compute(path: str | Path, *, dataset: str | None = None, samples_per_question: int | None = None,
            answer_field: str | None = None, data_dir: str | None = None, workers: int = 2,
            per_sample: bool = False) -> dict:
    src = load_source(path, samples_per_question)
    if not src.samples:
        raise GradeError(f"{src.path}: no completed samples")
    if src.format == "atts-run" and dataset and src.dataset and dataset != src.dataset:
        raise GradeError(f"{src.path} is a run on {src.dataset!r}, not {dataset!r}")
    attach_gold(src, dataset or src.dataset, data_dir)
    chosen = answer_field or src.default_field
    available = sorted({f for s in src.samples for f in s.answers})
    if chosen not in available:
        raise GradeError(f"answer field {chosen!r} not in {src.path}; available: {', '.join(available)}")
    fields = [chosen] + [f for f in available if f != chosen]
    t0 = time.perf_counter()
    verdicts = grade_fields(src.samples, fields, workers)
    k = samples_per_question or src.samples_per_question
    lat = [s.latency_s for s in src.samples if s.latency_s is not None]
    out = {
        "source": str(src.path), "format": src.format, "dataset": dataset or src.dataset,
        "samples_per_question": k, "answer_field": chosen, "grader": "math-verify (atts.grading)",
        **metrics(src.samples, chosen, verdicts[chosen], k),
        "latency_median": statistics.median(lat) if lat else None,
        "latency_mean": statistics.fmean(lat) if lat else None,
        "fields": {}, "grading_seconds": None, "created": time.time(),
    }
    for f in fields:
        m = metrics(src.samples, f, verdicts[f], k)
        agree = sum(a == b for a, b in zip(verdicts[f], verdicts[chosen]))
        m["verdict_agreement_with_" + chosen] = agree / len(src.samples)
        m["n_verdicts_differ"] = len(src.samples) - agree
        out["fields"][f] = m
    out["grading_seconds"] = time.perf_counter() - t0
    if per_sample:
        out["samples"] = [{"key": s.key, "question_group": s.group, "gold": s.gold,
                           "answers": {f: s.answers.get(f) for f in fields},
                           "correct": {f: verdicts[f][i] for f in fields}} for i, s in enumerate(src.samples)]
    return out


def format_result(r: dict) -> str:
    k = r["samples_per_question"]
    lines = [f"{r['source']} ({r['format']}, {r['n_questions']} questions, {r['n_samples']} samples), "
             f"answer field {r['answer_field']!r}, graded by {r['grader']}:",
             f"  pass@1 {r['pass@1']:.4f}   maj@{k} {r['maj@k']:.4f}   pass@{k} {r['pass@k']:.4f}"]
    for f, m in r["fields"].items():
        lines.append(f"  field {f:20s} pass@1 {m['pass@1']:.4f}  maj@{k} {m['maj@k']:.4f}  pass@{k} {m['pass@k']:.4f}"
                     f"  no answer {m['n_no_answer']:4d}  verdict differs from {r['answer_field']!r} on "
                     f"{m['n_verdicts_differ']} samples")
    return "\n".join(lines)


def command(args) -> int:
    """``atts grade`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        if args.samples_per_question is not None and args.samples_per_question < 1:
            raise GradeError("--samples-per-question must be >= 1")
        try:
            r = compute(args.dir, dataset=args.dataset, samples_per_question=args.samples_per_question,
                        answer_field=args.answer_field, data_dir=args.data_dir, workers=args.workers,
                        per_sample=args.per_sample)
        except GradeError as e:
            raise UserError(str(e)) from None
        print(format_result(r))
        if args.output:
            atomic_write_json(Path(args.output), r)
            print(f"wrote {args.output}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["grade", *sys.argv[1:]]))
