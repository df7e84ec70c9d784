"""Answer extraction and grading.

Extraction: the last balanced ``\\boxed{...}`` (or ``\\fbox``); for multiple choice also
``Answer: X`` and ``(X)``. Grading: math-verify, with the gold answer wrapped as
``$gold$`` and the prediction as ``\\boxed{pred}``. math-verify's timeouts use SIGALRM,
which works only in a main thread, so grading runs in a pool of worker processes (each
worker's main thread).
"""

from __future__ import annotations

import multiprocessing as mp
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _all_boxed(text: str) -> list[tuple[int, str]]:
    """(start, content) of every balanced \\boxed{...}/\\fbox{...}."""
    found = []
    for m in _BOX.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                i += 2
                continue
            depth += (c == "{") - (c == "}")
            i += 1
        if depth == 0:
            found.append((m.start(), text[m.end() : i - 1].strip()))
    return found


def extract_boxed(text: str | None) -> str | None:
    """The final answer in \\boxed{...} (balanced braces): the last one, or, when the
    final paragraph boxes several distinct answers (``\\boxed{1}, \\boxed{-2}``), all of
    them joined by ", ". None if there is no complete box."""
    if not text:
        return None
    boxes = _all_boxed(text)
    if not boxes:
        return None
    last_par = text.rfind("\n\n", 0, boxes[-1][0]) + 1
    final = []
    for start, content in boxes:
        if start >= last_par and content not in final:
            final.append(content)
    return ", ".join(final) if len(final) > 1 else boxes[-1][1]


_MC_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:：]?\s*\(?\s*([A-D])\b", re.IGNORECASE)
_MC_PAREN = re.compile(r"\(([A-D])\)")


def extract_answer(text: str | None, kind: str = "math") -> str | None:
    boxed = extract_boxed(text)
    if kind != "mc":
        return boxed
    if boxed:
        m = re.search(r"[A-D]", boxed)
        if m:
            return m.group(0)
    if not text:
        return None
    for rx in (_MC_ANSWER, _MC_PAREN):
        hits = rx.findall(text)
        if hits:
            return hits[-1].upper()
    return None


INTEGER_KINDS = ("arith", "chain")  # synthetic tasks with integer answers: exact compare


def _verify_one(args: tuple[str | None, str, str]) -> bool:
    pred, gold, kind = args
    if pred is None or pred == "":
        return False
    if kind == "mc":
        return pred.strip().upper() == gold.strip().upper()
    if kind in INTEGER_KINDS:
        try:
            return int(pred.strip()) == int(gold.strip())
        except ValueError:
            pass
    from math_verify import parse, verify  # deferred: math_verify (sympy) is heavy; loaded in the grading worker only

    try:
        g = parse(f"${gold}$")
        p = parse(f"\\boxed{{{pred}}}")
        return bool(verify(g, p))
    except Exception:
        return False


class Grader:
    """Grades (prediction, gold, kind) triples in worker processes."""

    def __init__(self, workers: int = 2):
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def grade(self, items: list[tuple[str | None, str, str]]) -> list[bool]:
        if not items:
            return []
        # cheap kinds never need math-verify: grade them here
        if all(k in ("mc",) or (k in INTEGER_KINDS and _is_int(p)) or p in (None, "") for p, _, k in items):
            return [_verify_one(x) for x in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return list(self._pool.map(_verify_one, items, chunksize=16))


def _is_int(s: str | None) -> bool:
    try:
        int(str(s).strip())
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Accuracy:
    pass_at_1: float
    maj_at_k: float
    pass_at_k: float
    n_questions: int
    n_samples: int


def normalise_answer(a: str | None) -> str | None:
    if a is None:
        return None
    s = re.sub(r"\s+", "", a)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("dfrac", "frac").replace("tfrac", "frac")
    return s.rstrip(".")


def accuracy(by_question: dict[object, list[tuple[str | None, bool]]]) -> Accuracy:
    """pass@1: mean correctness over samples; maj@k: the most common (normalised)
    answer of each question is correct (ties: the first seen); pass@k: any sample is."""
    p1, maj, pk, ns = [], [], [], 0
    for samples in by_question.values():
        if not samples:
            continue
        ns += len(samples)
        p1.extend(c for _, c in samples)
        pk.append(any(c for _, c in samples))
        answered = [(normalise_answer(a), c) for a, c in samples if a is not None]
        if answered:
            counts = Counter(a for a, _ in answered)
            top = max(counts.values())
            winner = next(a for a, _ in answered if counts[a] == top)
            maj.append(next(c for a, c in answered if a == winner))
        else:
            maj.append(False)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    return Accuracy(mean(p1), mean(maj), mean(pk), len(pk), ns)
