"""The `chain` task: a reasoning-shaped synthetic benchmark for the CPU testbed.

A problem gives a start value and a labelled list of changes ("(A) add 7, (B) double
it, (C) take away 4, ..."). A solution is written the way R1 and QwQ think: many short
paragraphs separated by blank lines, each one operation, one sub-result or one check,
in several paraphrases (so correct text has a continuous spread of perplexities), with
occasional self-checks, a closing ``</think>`` and a final ``\\boxed{N}``.

Why this shape (``../shared/reference/REAL_WORKLOAD.md``): real chunks of 500 tokens
hold ~12 short paragraphs; a real solution runs a median of 2 and a mean of 3.8 such
chunks, 5% reach the 15-turn cap. The number of changes here is drawn log-normally so
that, at the testbed's 128-token chunks, a solution spans a median of 2-3 chunks, a mean
of about 4, and under 5% reach 15.

Every value stays in 0..99 and every operand is 1..9 (or x2, x3, /2), so each step is
exact and gradable; the difficulty is in carrying the running value and finding the
next change over a long context, which a 2-layer draft gets wrong now and then.

Corrections (`with_error`): the target is also trained on solutions where one step is
wrong the way the draft is wrong (off by one, by ten, a digit slip), the error is carried
on for 0-2 more steps, then a paragraph says "Wait, ..." and redoes the step. The wrong
paragraphs carry no loss (`Solution.loss_spans`), so the target learns to repair, not
to err: in append mode it continues after a wrong draft chunk and fixes it.

Splits are disjoint by construction (a hash bucket of the problem text), seeded.
"""

from __future__ import annotations

import hashlib
import re
import math
import random
from dataclasses import dataclass, field

SPLITS = ("train", "calibration", "test")
_BUCKETS = {"train": range(0, 80), "calibration": range(80, 90), "test": range(90, 100)}
PARAGRAPH = "\n\n"
MAX_VALUE = 99
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWX"  # at most 24 changes

# (name, problem phrase, sign, applies(v, a) -> result or None)
OPS = ("add", "sub", "double", "triple", "halve")


@dataclass(frozen=True)
class Change:
    op: str
    arg: int = 0

    def phrase(self) -> str:
        return {"add": f"add {self.arg}", "sub": f"take away {self.arg}", "double": "double it",
                "triple": "triple it", "halve": "halve it"}[self.op]

    def apply(self, v: int) -> int:
        return {"add": v + self.arg, "sub": v - self.arg, "double": 2 * v, "triple": 3 * v,
                "halve": v // 2}[self.op]

    def equation(self, v: int, result: int) -> str:
        """The canonical equation every op paragraph contains, e.g. ``37 + 8 = 45``."""
        rhs = {"add": f"+ {self.arg}", "sub": f"- {self.arg}", "double": "* 2", "triple": "* 3",
               "halve": "/ 2"}[self.op]
        return f"{v} {rhs} = {result}"


@dataclass(frozen=True)
class ChainProblem:
    id: str
    problem: str
    answer: str
    start: int
    changes: tuple[Change, ...]


@dataclass
class Solution:
    """A solution text and the character spans that carry training loss (all of it,
    except the wrong paragraphs of an injected error)."""
    text: str
    loss_spans: list[tuple[int, int]] = field(default_factory=list)
    error_at: int | None = None  # index of the wrong change, when one was injected


SUBJECTS = [
    ("The tank holds {v} liters of water.", "liters"),
    ("Mia has {v} marbles.", "marbles"),
    ("The counter shows {v}.", "on the counter"),
    ("The shelf has {v} books.", "books"),
    ("The jar contains {v} coins.", "coins"),
    ("The box holds {v} apples.", "apples"),
]

INTRO = [
    "Okay, let me work through this step by step.",
    "Alright, I need to follow the value through every change.",
    "Let me think about this carefully, one change at a time.",
    "Hmm, this is a chain of changes, so I will keep a running value.",
    "Okay, so I need to apply each change in order and track the value.",
]
START = [
    "We start with {v}.",
    "The starting value is {v}.",
    "At the beginning there are {v}.",
    "So the value begins at {v}.",
]
STEP = [
    "Change {i} says {p}, so {eq}.",
    "For change {i}, I {p}: {eq}.",
    "Next is change {i}, {p}. That gives {eq}.",
    "Now change {i}: {p}, which means {eq}.",
    "Change {i} is to {p}. So {eq}.",
    "Then, for change {i}, {eq}.",
    "Applying change {i} ({p}) gives {eq}.",
]
CHECK = [
    "Wait, let me double-check that: {eq}. Yes, that is right.",
    "Let me verify: {eq}. Okay, that checks out.",
    "Hmm, is that right? {eq}. Yes.",
    "Just to be safe, {eq}. Good.",
]
REFLECT = {
    "up": ["Okay, so the value went up.", "That makes it bigger, as expected.", "Good, that increases it."],
    "down": ["Okay, so the value went down.", "That makes it smaller, as expected.", "Right, that lowers it."],
}
PROGRESS = [
    "So far the value is {v}.",
    "The running value is now {v}.",
    "So now I have {v}.",
    "Okay, that leaves {v} for the next change.",
]
FIX = [
    "Wait, that is not right. {eq}, not {bad}.",
    "Hold on, I made a mistake. {eq}, not {bad}.",
    "Wait, let me recheck change {i}: {eq}, not {bad}.",
    "Hmm, wait. Change {i} was wrong: {eq}, not {bad}.",
]
REDO = [
    "So after change {i} the value is {v}, and I continue from there.",
    "Let me redo the rest from {v}.",
    "So the correct value after change {i} is {v}.",
]
DONE = [
    "That was the last change, so the final value is {v}.",
    "All {n} changes are done, and the value is {v}.",
    "So after every change the value ends at {v}.",
]
ANSWER = [
    "</think>\n\nThe final value is \\boxed{{{v}}}.",
    "</think>\n\nAfter all the changes, the answer is \\boxed{{{v}}}.",
]


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100


def split_of(problem_text: str) -> str:
    b = _bucket(problem_text)
    return next(s for s, r in _BUCKETS.items() if b in r)


def n_changes(rng: random.Random) -> int:
    """Log-normal number of changes: median 6, long tail, capped at 24 (see module doc)."""
    return max(2, min(24, round(math.exp(rng.gauss(math.log(6.0), 0.65)))))


def _draw_change(rng: random.Random, v: int) -> Change:
    while True:
        op = rng.choices(OPS, weights=(5, 5, 1.2, 0.6, 1.2))[0]
        c = Change(op, rng.randint(1, 9) if op in ("add", "sub") else 0)
        r = c.apply(v)
        if op == "halve" and v % 2:
            continue
        if 0 <= r <= MAX_VALUE:
            return c


def make_problem(rng: random.Random, n: int) -> ChainProblem:
    subject, _ = rng.choice(SUBJECTS)
    v = start = rng.randint(1, MAX_VALUE)
    changes = []
    for _ in range(n):
        c = _draw_change(rng, v)
        changes.append(c)
        v = c.apply(v)
    listing = ", ".join(f"({label(i)}) {c.phrase()}" for i, c in enumerate(changes))
    text = (f"{subject.format(v=start)} Apply these {n} changes in order: {listing}. "
            f"What is the value at the end?")
    pid = hashlib.sha256(text.encode()).hexdigest()[:12]
    return ChainProblem(pid, text, str(v), start, tuple(changes))


def generate(split: str, n: int, seed: int = 0) -> list[ChainProblem]:
    """The first ``n`` distinct problems of ``split`` for this ``seed``: deterministic,
    and disjoint from every other split whatever the seeds."""
    if split not in SPLITS:
        raise ValueError(f"chain split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"chain/{split}/{seed}")
    out: list[ChainProblem] = []
    seen: set[str] = set()
    while len(out) < n:
        p = make_problem(rng, n_changes(rng))
        if p.problem in seen or split_of(p.problem) != split:
            continue
        seen.add(p.problem)
        out.append(p)
    return out


def slip(rng: random.Random, right: int) -> int:
    """A wrong result the way a weak draft is wrong: off by one or two, off by ten, or the
    digits of a two-digit result swapped."""
    while True:
        kind = rng.random()
        if kind < 0.5:
            bad = right + rng.choice((-2, -1, 1, 2))
        elif kind < 0.8:
            bad = right + rng.choice((-10, 10))
        else:
            bad = int(str(right)[::-1]) if right >= 10 else right + 1
        if bad != right and 0 <= bad <= MAX_VALUE:
            return bad


def solve(p: ChainProblem, rng: random.Random, *, with_error: bool = False) -> Solution:
    """One paraphrased reasoning trace for ``p`` (seeded by ``rng``). With ``with_error``,
    one change is computed wrongly, carried on for 0-2 changes, then fixed ("Wait, ...");
    the wrong paragraphs are excluded from ``loss_spans``."""
    paras: list[tuple[str, bool]] = []  # (paragraph, carries loss)
    n = len(p.changes)
    err_at = rng.randrange(n) if with_error else None
    carry = min(rng.choice((0, 0, 0, 1, 1, 2)), n - 1 - err_at) if with_error else 0
    paras.append((rng.choice(INTRO), True))
    paras.append((rng.choice(START).format(v=p.start), True))
    v = p.start
    i = 0
    while i < n:
        c = p.changes[i]
        right = c.apply(v)
        if i == err_at:
            bad = slip(rng, right)
            paras.append((_step(rng, i, c, v, bad), False))
            w = bad
            for j in range(i + 1, i + 1 + carry):  # the error carried on, unnoticed
                w2 = p.changes[j].apply(w)
                if not 0 <= w2 <= MAX_VALUE:
                    break
                paras.append((_step(rng, j, p.changes[j], w, w2), False))
                w = w2
            paras.append((rng.choice(FIX).format(i=label(i), eq=c.equation(v, right), bad=bad), True))
            paras.append((rng.choice(REDO).format(i=label(i), v=right), True))
            err_at = None
        else:
            paras.append((_step(rng, i, c, v, right), True))
            if rng.random() < 0.3:
                paras.append((rng.choice(REFLECT["up" if right >= v else "down"]), True))
            r = rng.random()
            if r < 0.3:
                paras.append((rng.choice(CHECK).format(eq=c.equation(v, right)), True))
            elif r < 0.55:
                paras.append((rng.choice(PROGRESS).format(v=right), True))
        v = right
        i += 1
    paras.append((rng.choice(DONE).format(v=v, n=n), True))
    paras.append((rng.choice(ANSWER).format(v=v), True))
    text, spans, pos = "", [], 0
    for k, (para, loss) in enumerate(paras):
        piece = para + (PARAGRAPH if k < len(paras) - 1 else "")
        if loss:
            spans.append((pos, pos + len(piece)))
        text += piece
        pos += len(piece)
    return Solution(text, spans, None if not with_error else next(
        (k for k, (_, loss) in enumerate(paras) if not loss), None))


def _step(rng: random.Random, i: int, c: Change, v: int, result: int) -> str:
    return rng.choice(STEP).format(i=label(i), p=c.phrase(), eq=c.equation(v, result))


def label(i: int) -> str:
    """Change i's label, A, B, C, ...: one capital letter, a token no other word of the task
    is, so that finding a change in the problem is one exact lookup (a 2-layer draft
    learns it; numbered labels it did not learn in the same budget)."""
    return LABELS[i]


def reference_solution(p: ChainProblem) -> str:
    """A deterministic clean solution (seeded by the problem id)."""
    return solve(p, random.Random(p.id)).text


_EQ = re.compile(r"(\d+) ([+\-*/]) (\d+) = (\d+)")
_CHANGE = re.compile(r"[Cc]hange ([A-X])\b")
_NUM = re.compile(r"\d+")
_BOXED = re.compile(r"\\boxed\{(\d+)\}")


def _eq_value(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else -1}[op]


def first_error(p: ChainProblem, text: str, *, complete: bool = True) -> int | None:
    """Character offset of the first paragraph of ``text`` (a solution so far) that is
    wrong for ``p``, or None. A step paragraph is wrong when it names another change than
    the next one, starts from another value than the running one, applies another change,
    or computes it wrongly; a check or progress paragraph when its equation or value is
    wrong; the closing paragraphs when changes were skipped or the value differs. With
    ``complete=False`` the last paragraph is taken as cut off (a chunk ending mid-way) and
    is judged only once it is whole. A "Wait, ..." correction (the target's repair) resets
    the running value to the corrected one."""
    v, k = p.start, 0
    paras = text.split(PARAGRAPH)
    pos = 0
    for idx, para in enumerate(paras):
        off, pos = pos, pos + len(para) + len(PARAGRAPH)
        if not complete and idx == len(paras) - 1:
            break
        low = para.lower()
        eqs = _EQ.findall(para)
        if "not right" in low or "mistake" in low or "was wrong" in low or "recheck" in low:
            continue  # a correction: the redo paragraph that follows sets the value
        m = _CHANGE.search(para)
        if m and eqs and not low.startswith(("so after", "so the correct")):
            a, op, b, c = eqs[0]
            a, b, c = int(a), int(b), int(c)
            if k >= len(p.changes) or m.group(1) != label(k):
                return off
            ch = p.changes[k]
            want_op = {"add": ("+", ch.arg), "sub": ("-", ch.arg), "double": ("*", 2), "triple": ("*", 3),
                       "halve": ("/", 2)}[ch.op]
            if a != v or (op, b) != want_op or c != _eq_value(a, op, b):
                return off
            v, k = c, k + 1
            continue
        if low.startswith(("so after change", "so the correct value", "let me redo the rest from")):
            nums = [int(x) for x in _NUM.findall(para)]
            if m:  # "So after change i the value is v": i names the change just redone
                k = LABELS.index(m.group(1)) + 1
                if k - 1 < len(p.changes):
                    v = _value_after(p, k)
            if nums and nums[-1] != v:
                return off
            continue
        if eqs:
            if any(int(c) != _eq_value(int(a), op, int(b)) for a, op, b, c in eqs):
                return off
            continue
        box = _BOXED.search(para)
        nums = [int(x) for x in _NUM.findall(para)]
        if box or low.startswith(("that was the last", "all ", "so after every")):
            if k != len(p.changes) or (box and int(box.group(1)) != v) or (nums and nums[-1] != v):
                return off
            continue
        if k == 0 and nums:  # the start paragraph
            if nums[-1] != p.start:
                return off
            continue
        if nums and nums[-1] != v:  # a progress paragraph
            return off
    return None


def _value_after(p: ChainProblem, k: int) -> int:
    v = p.start
    for c in p.changes[:k]:
        v = c.apply(v)
    return v
