"""The `arith` task: step-by-step integer arithmetic, the testbed's reasoning benchmark.

A problem is ``Compute a op b op c ...`` with 2-4 operations. Its solution has one
operation per step, products first, then left to right, steps separated by a blank
line, and ends with ``The answer is \\boxed{N}.`` Every operand and every intermediate
stays in 0..99, and each ``*`` multiplies a factor 2..9 by one of at most 12, so the
task is learnable by a tiny model while a 2-layer draft still errs often.

Splits are disjoint by construction: a problem's split is a function of its text
(a hash bucket), and each split's seeded generator keeps only problems of its bucket.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

SPLITS = ("train", "calibration", "test")
# hash buckets out of 100
_BUCKETS = {"train": range(0, 80), "calibration": range(80, 90), "test": range(90, 100)}
_SPLIT_SEED = {"train": 1, "calibration": 2, "test": 3}
STEP_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ArithProblem:
    id: str
    problem: str
    answer: str
    steps: tuple[str, ...]

    @property
    def solution(self) -> str:
        """The reference solution: steps, blank lines, boxed answer."""
        return STEP_SEPARATOR.join([*self.steps, f"The answer is \\boxed{{{self.answer}}}."])


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100


def split_of(problem_text: str) -> str:
    b = _bucket(problem_text)
    return next(s for s, r in _BUCKETS.items() if b in r)


def solve(tokens: list) -> tuple[list[str], int]:
    """Solve ``[n, op, n, op, n, ...]``: products first, then left to right.
    Returns the steps as ``x op y = z`` strings and the value."""
    toks = list(tokens)
    steps: list[str] = []
    i = 1
    while i < len(toks):  # products first
        if toks[i] == "*":
            a, b = toks[i - 1], toks[i + 1]
            steps.append(f"{a} * {b} = {a * b}")
            toks[i - 1 : i + 2] = [a * b]
        else:
            i += 2
    while len(toks) > 1:  # then left to right
        a, op, b = toks[0], toks[1], toks[2]
        v = a + b if op == "+" else a - b
        steps.append(f"{a} {op} {b} = {v}")
        toks[0:3] = [v]
    return steps, toks[0]


def _sample_tokens(rng: random.Random, n_ops: int) -> list:
    ops = [rng.choice("+-*") for _ in range(n_ops)]
    nums: list[int] = []
    for k in range(n_ops + 1):
        adjacent_mul = (k > 0 and ops[k - 1] == "*") or (k < n_ops and ops[k] == "*")
        nums.append(rng.randint(2, 12) if adjacent_mul else rng.randint(1, 50))
    toks: list = [nums[0]]
    for op, n in zip(ops, nums[1:]):
        toks += [op, n]
    return toks


def _valid(toks: list) -> bool:
    # every product: one factor 2..9, the other <= 12, no chained products
    for i in range(1, len(toks), 2):
        if toks[i] == "*":
            a, b = toks[i - 1], toks[i + 1]
            if i + 2 < len(toks) and toks[i + 2] == "*":
                return False
            if not (min(a, b) >= 2 and min(a, b) <= 9 and max(a, b) <= 12):
                return False
    steps, value = solve(toks)
    for s in steps:
        lhs, rhs = s.split(" = ")
        if not 0 <= int(rhs) <= 99:
            return False
    return 0 <= value <= 99


def make_problem(toks: list) -> ArithProblem:
    text = "Compute " + " ".join(str(t) for t in toks) + "."
    steps, value = solve(toks)
    pid = hashlib.sha256(text.encode()).hexdigest()[:12]
    return ArithProblem(id=pid, problem=text, answer=str(value), steps=tuple(steps))


def generate(split: str, n: int, seed: int = 0) -> list[ArithProblem]:
    """The first ``n`` distinct problems of ``split`` for this ``seed``: deterministic,
    and disjoint from every other split whatever the seeds."""
    if split not in SPLITS:
        raise ValueError(f"arith split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"arith/{split}/{seed}/{_SPLIT_SEED[split]}")
    out: list[ArithProblem] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        n_ops = (2, 3, 4)[len(out) % 3]  # balanced: a third each of 2, 3 and 4 operations
        while True:
            attempts += 1
            if attempts > 1000 * n + 100000:
                raise RuntimeError(f"arith: could not draw {n} distinct {split} problems")
            toks = _sample_tokens(rng, n_ops)
            if _valid(toks):
                break
        p = make_problem(toks)
        if p.problem in seen or split_of(p.problem) != split:
            continue
        seen.add(p.problem)
        out.append(p)
    return out
