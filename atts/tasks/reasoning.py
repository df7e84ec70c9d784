"""The `chain` task: a reasoning-shaped synthetic benchmark for the CPU testbed.

A problem gives a start value, a rule and a number of rounds ("The counter shows 37.
Each round: if the value is even, halve it; if it is odd, add 7. Apply 9 rounds. What
is the value at the end?"). A solution is written the way R1 and QwQ think: many short
paragraphs separated by blank lines, one round, one sub-result or one check each, in
several paraphrases (so correct text has a continuous spread of perplexities), with
occasional self-checks and reflections, a closing ``</think>`` and a final ``\\boxed{N}``.

Why this shape (``../shared/reference/REAL_WORKLOAD.md``): real chunks of 500 tokens
hold ~12 short paragraphs; a real solution runs a median of 2 and a mean of 3.8 such
chunks, 5% reach the 15-turn cap. The number of rounds is drawn log-normally so that, at
the testbed's 128-token chunks, a solution spans a median of 3 chunks and a mean of
about 3.5, with a long tail.

Each round depends only on the running value and the rule's constants, so the task is
learnable by tiny models on 2 CPU cores; the difficulty is carrying the value, the
branch (parity or a threshold) and the arithmetic over a long context, which a 2-layer
draft gets wrong now and then. (A first version with a list of different changes to
look up was not learned by a 2-layer draft in a 15-minute budget: it kept the arithmetic
and the running value but made the changes up.)

Corrections (`with_error`): the target is also trained on solutions where one round is
computed wrongly the way the draft errs (off by one or two, by ten, a digit slip), the
error carried on for 0-2 rounds, then a paragraph says "Wait, ..." and redoes the round.
The wrong paragraphs carry no loss (`Solution.loss_spans`), so the target learns to
repair, not to err: in append mode it continues after a wrong draft chunk and fixes it.
That was the first target's lesson (``errors="slips"``). The shipped target learnt from
``errors="draft"``, lessons shaped on the draft's measured first errors (a wrong value,
the other branch of the rule, a closing paragraph too early or wrong; carried 0-4 rounds
with the usual asides, sometimes through the closing answer), 50% of its examples at
first, then 15%: with 50% it repaired more but also "corrected" right text in a quarter
of its own solutions (docs/testbed_chain.md). ``errors="recheck"`` (tried on 2026-11-30,
not shipped; docs/testbed_chain.md, "Look-backs"): every solution looks back every 3-5
rounds (`LOOK_BACK`), redoing the last rounds from the values written, and the error
lessons are found by such a look-back ("round 4: 47 + 1 = 48, but I wrote 58, so that
was wrong"): noticing a wrong value becomes writing the right one and comparing. A
target fine-tuned on them repaired 65% of the draft's first errors when it wrote the
rest, but ATTS, where it writes one chunk, did not gain. ``errors="resume"`` (tried on
2026-11-30, not shipped; docs/testbed_chain.md, "Look-backs that say where the count
stands") adds after every look-back a paragraph naming the next round and its
count-down (`RESUME`), so that a draft going on after a target's look-back does not redo
a round.

Splits are disjoint by construction (a hash bucket of the problem text), seeded.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field

SPLITS = ("train", "calibration", "test")
_BUCKETS = {"train": range(0, 80), "calibration": range(80, 90), "test": range(90, 100)}
PARAGRAPH = "\n\n"


@dataclass(frozen=True)
class Rule:
    """``parity``: even -> halve, odd -> add ``a``. ``threshold``: below ``t`` -> add ``a``,
    else take away ``b``. Values stay in 0..112 (parity) or 0..99 (threshold)."""
    kind: str
    a: int
    b: int = 0
    t: int = 0

    def text(self) -> str:
        if self.kind == "parity":
            return f"if the value is even, halve it; if it is odd, add {self.a}"
        return f"if the value is less than {self.t}, add {self.a}; otherwise take away {self.b}"

    def branch(self, v: int) -> tuple[str, str, str]:
        """(condition, action words, equation operator) for value ``v``."""
        if self.kind == "parity":
            return ("even", "halve it", "/ 2") if v % 2 == 0 else ("odd", f"add {self.a}", f"+ {self.a}")
        if v < self.t:
            return (f"less than {self.t}", f"add {self.a}", f"+ {self.a}")
        return (f"not less than {self.t}", f"take away {self.b}", f"- {self.b}")

    def apply(self, v: int) -> int:
        op = self.branch(v)[2]
        return {"/": v // 2, "+": v + self.a, "-": v - self.b}[op[0]]


@dataclass(frozen=True)
class ChainProblem:
    id: str
    problem: str
    answer: str
    start: int
    rule: Rule
    rounds: int


@dataclass
class Solution:
    """A solution text and the character spans that carry training loss (all of it,
    except the wrong paragraphs of an injected error)."""
    text: str
    loss_spans: list[tuple[int, int]] = field(default_factory=list)


SUBJECTS = [
    "The tank holds {v} liters of water.",
    "Mia has {v} marbles.",
    "The counter shows {v}.",
    "The shelf has {v} books.",
    "The jar contains {v} coins.",
    "The box holds {v} apples.",
]
INTRO = [
    "Okay, let me work through this step by step.",
    "Alright, I need to follow the value through every round.",
    "Let me think about this carefully, one round at a time.",
    "Hmm, this is a repeated rule, so I will keep a running value.",
    "Okay, so I need to apply the rule round by round and track the value.",
]
START = [
    "We start with {v}.",
    "The starting value is {v}.",
    "At the beginning the value is {v}.",
    "So the value begins at {v}.",
]
STEP = [  # "(k left)" counts down in every one: the last round says "0 left", so when to
    # stop is read off the last paragraph (a 2-layer draft did not learn to compare
    # "round r of n" in the same budget: it ran past the last round)
    "Round {r} ({left} left): {v} is {cond}, so I {act}. {eq}.",
    "In round {r} ({left} left), {v} is {cond}, which means I {act}: {eq}.",
    "Now round {r}, {left} left after it. Since {v} is {cond}, I {act}, so {eq}.",
    "Round {r} ({left} left). The value {v} is {cond}; I {act} and get {eq}.",
    "For round {r} ({left} left): {v} is {cond}. So {eq}.",
    "Next, round {r} with {left} left: {v} is {cond}, and I {act}. That gives {eq}.",
]
REFLECT = {
    "up": ["Okay, so the value went up.", "That makes it bigger.", "Good, that increases it."],
    "down": ["Okay, so the value went down.", "That makes it smaller.", "Right, that lowers it."],
}
CHECK = [
    "Wait, let me double-check that: {eq}. Yes, that is right.",
    "Let me verify: {eq}. Okay, that checks out.",
    "Hmm, is that right? {eq}. Yes.",
    "Just to be safe, {eq}. Good.",
]
PROGRESS = [
    "So far the value is {v}.",
    "The running value is now {v}.",
    "So now I have {v}.",
    "Okay, that leaves {v} for the next round.",
]
FIX = [
    "Wait, that is not right. {eq}, not {bad}.",
    "Hold on, I made a mistake. {eq}, not {bad}.",
    "Wait, let me recheck round {r}: {eq}, not {bad}.",
    "Hmm, wait. Round {r} was wrong: {eq}, not {bad}.",
]
FIX_BRANCH = [  # the draft's second commonest slip: the other branch, near a threshold
    "Wait, that is not right. {v} is {cond}, so {eq}, not {bad}.",
    "Hmm, wait. Round {r} was wrong: {v} is {cond}, so {eq}, not {bad}.",
    "Wait, let me recheck round {r}: {v} is {cond}. So {eq}, not {bad}.",
]
FIX_EARLY = [  # a closing paragraph written before the last round
    "Wait, that is not right. Only {k} of the {n} rounds are done.",
    "Hold on, I made a mistake. I have done {k} rounds, not {n}.",
]
FIX_FINAL = [  # a closing paragraph with another value than the running one
    "Wait, that is not right. After round {n} the value is {v}, not {bad}.",
    "Hold on, I made a mistake. The value after round {n} is {v}, not {bad}.",
]
REDO = [
    "So after round {r} the value is {v}, and I continue from there.",
    "So the correct value after round {r} is {v}.",
]
DONE = [
    "That was the last round, so the final value is {v}.",
    "All {n} rounds are done, and the value is {v}.",
    "So after every round the value ends at {v}.",
]
ANSWER = [
    "</think>\n\nThe final value is \\boxed{{{v}}}.",
    "</think>\n\nAfter all the rounds, the answer is \\boxed{{{v}}}.",
]


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100


def split_of(problem_text: str) -> str:
    b = _bucket(problem_text)
    return next(s for s, r in _BUCKETS.items() if b in r)


def n_rounds(rng: random.Random) -> int:
    """Log-normal number of rounds: median 5, long tail, capped at 30 (see module doc)."""
    return max(2, min(30, round(math.exp(rng.gauss(math.log(5.0), 0.7)))))


def draw_rule(rng: random.Random) -> Rule:
    if rng.random() < 0.6:
        return Rule("parity", rng.choice((1, 3, 5, 7, 9, 11, 13)))
    t = rng.randint(20, 80)
    return Rule("threshold", rng.randint(3, 19), rng.randint(3, 19), t)


def make_problem(rng: random.Random, n: int) -> ChainProblem:
    rule = draw_rule(rng)
    start = rng.randint(1, 99)
    v = start
    for _ in range(n):
        v = rule.apply(v)
    subject = rng.choice(SUBJECTS).format(v=start)
    text = f"{subject} Each round: {rule.text()}. Apply {n} rounds. What is the value at the end?"
    return ChainProblem(hashlib.sha256(text.encode()).hexdigest()[:12], text, str(v), start, rule, n)


def generate(split: str, n: int, seed: int = 0) -> list[ChainProblem]:
    """The first ``n`` distinct problems of ``split`` for this ``seed``: deterministic,
    and disjoint from every other split whatever the seeds."""
    if split not in SPLITS:
        raise ValueError(f"chain split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"chain/{split}/{seed}")
    out: list[ChainProblem] = []
    seen: set[str] = set()
    while len(out) < n:
        p = make_problem(rng, n_rounds(rng))
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
        if bad != right and 0 <= bad <= 120:
            return bad


def equation(rule: Rule, v: int, result: int) -> str:
    """The canonical equation every round paragraph contains, e.g. ``37 + 7 = 44``."""
    return f"{v} {rule.branch(v)[2]} = {result}"


def _step(rng: random.Random, p: ChainProblem, r: int, v: int, result: int, branch_of: int | None = None) -> str:
    """Round ``r``'s paragraph from ``v`` to ``result``, in the words of the branch taken
    for ``branch_of`` (``v``; another value for a wrong-branch slip)."""
    cond, act, op = p.rule.branch(v if branch_of is None else branch_of)
    return rng.choice(STEP).format(r=r + 1, left=p.rounds - r - 1, v=v, cond=cond, act=act,
                                   eq=f"{v} {op} = {result}")


def _asides(rng: random.Random, eq: str, v: int, result: int) -> list[str]:
    """The optional paragraphs after a round: a reflection (30%), then a check of its
    equation (30%) or the running value (25%). The same draws for right and wrong rounds:
    the draft checks its wrong equations too ("Hmm, is that right? 3 + 3 = 8. Yes.")."""
    out = []
    if rng.random() < 0.3:
        out.append(rng.choice(REFLECT["up" if result >= v else "down"]))
    x = rng.random()
    if x < 0.3:
        out.append(rng.choice(CHECK).format(eq=eq))
    elif x < 0.55:
        out.append(rng.choice(PROGRESS).format(v=result))
    return out


def _other_branch(p: ChainProblem, v: int) -> tuple[int, int] | None:
    """(result, a value on the other side of the rule) for a wrong-branch round from
    ``v``, or None where the other branch would leave the rule's range."""
    if p.rule.kind == "parity":
        other = v + 1
        return (v + p.rule.a, other) if v % 2 == 0 else (v // 2, other)
    if v < p.rule.t:
        return (v - p.rule.b, p.rule.t) if v - p.rule.b >= 0 else None
    return v + p.rule.a, p.rule.t - 1


# the injected errors, shaped on the draft's own (docs/testbed_chain.md): a wrong value
# (mostly off by ten), the other branch of the rule, a closing paragraph too early or
# with a wrong value; carried on for 0-4 rounds with the usual asides, sometimes
# through the closing answer
ERROR_KINDS = {"value": 0.55, "branch": 0.3, "closing": 0.15}
CARRY = (0, 0, 1, 1, 2, 2, 3, 4)
THROUGH_ANSWER = 0.5      # an error carried past the last round: the closing paragraph too
CLOSING_WITH_ANSWER = 0.6  # a wrong closing paragraph: the boxed answer after it too
ERROR_MODELS = ("slips", "draft", "recheck", "resume")


def solve(p: ChainProblem, rng: random.Random, *, with_error: bool = False, errors: str = "slips") -> Solution:
    """One paraphrased reasoning trace for ``p`` (seeded by ``rng``). With ``with_error``,
    one error carried on unnoticed, then fixed ("Wait, ...") and redone; the wrong
    paragraphs are excluded from ``loss_spans``. ``errors`` (`ERROR_MODELS`): "slips",
    the first target's lessons (a wrong result carried on for 0-2 rounds, fixed right
    after); "draft", the draft's own error kinds (`_solve_with_draft_error`), which the
    shipped target learnt from (docs/testbed_chain.md)."""
    if errors not in ERROR_MODELS:
        raise ValueError(f"errors must be one of {sorted(ERROR_MODELS)}, got {errors!r}")
    if with_error and errors == "draft":
        return _solve_with_draft_error(p, rng)
    if errors in ("recheck", "resume"):
        return _solve_with_rechecks(p, rng, with_error=with_error, resume=errors == "resume")
    paras: list[tuple[str, bool]] = [(rng.choice(INTRO), True), (rng.choice(START).format(v=p.start), True)]
    err_at = rng.randrange(p.rounds) if with_error else None
    carry = min(rng.choice((0, 0, 0, 1, 1, 2)), p.rounds - 1 - err_at) if with_error else 0
    v = p.start
    for r in range(p.rounds):
        right = p.rule.apply(v)
        if r == err_at:
            bad = slip(rng, right)
            paras.append((_step(rng, p, r, v, bad), False))
            w = bad
            for j in range(r + 1, r + 1 + carry):  # the error carried on, unnoticed
                w2 = p.rule.apply(w)
                paras.append((_step(rng, p, j, w, w2), False))
                w = w2
            paras.append((rng.choice(FIX).format(r=r + 1, eq=equation(p.rule, v, right), bad=bad), True))
            paras.append((rng.choice(REDO).format(r=r + 1, v=right), True))
        else:
            paras.append((_step(rng, p, r, v, right), True))
            if rng.random() < 0.3:
                paras.append((rng.choice(REFLECT["up" if right >= v else "down"]), True))
            x = rng.random()
            if x < 0.3:
                paras.append((rng.choice(CHECK).format(eq=equation(p.rule, v, right)), True))
            elif x < 0.55:
                paras.append((rng.choice(PROGRESS).format(v=right), True))
        v = right
    paras.append((rng.choice(DONE).format(v=v, n=p.rounds), True))
    paras.append((rng.choice(ANSWER).format(v=v), True))
    return _assemble(paras, wrong_breaks_loss=False)


def _assemble(paras: list[tuple[str, bool]], *, wrong_breaks_loss: bool) -> Solution:
    """The paragraphs joined by `PARAGRAPH`, each with its break in ``loss_spans`` when it
    carries loss. ``wrong_breaks_loss``: a wrong paragraph's break carries loss too (after
    a wrong boxed answer, going on instead of stopping is what the target must learn)."""
    text, spans, pos = "", [], 0
    for k, (para, loss) in enumerate(paras):
        sep = PARAGRAPH if k < len(paras) - 1 else ""
        end = pos + len(para) + len(sep)
        if loss:
            spans.append((pos, end))
        elif wrong_breaks_loss and sep:
            spans.append((pos + len(para), end))
        text += para + sep
        pos = end
    return Solution(text, spans)


def _solve_with_draft_error(p: ChainProblem, rng: random.Random) -> Solution:
    """``solve(errors="draft")``: one draft-like error (``ERROR_KINDS``) carried on
    unnoticed for 0-4 rounds with the usual asides (possibly through the closing answer),
    then fixed ("Wait, ...") and redone; the wrong paragraphs are excluded from
    ``loss_spans`` (their paragraph breaks keep it: after a wrong boxed answer, going on
    instead of stopping is what the target must learn)."""
    paras: list[tuple[str, bool]] = [(rng.choice(INTRO), True), (rng.choice(START).format(v=p.start), True)]
    kind = rng.choices(list(ERROR_KINDS), weights=list(ERROR_KINDS.values()))[0]
    err_at = rng.randrange(1, p.rounds + 1) if kind == "closing" else rng.randrange(p.rounds)
    if kind == "branch" and _other_branch(p, _value_after(p, err_at)) is None:
        kind = "value"
    v, r = p.start, 0
    while r <= p.rounds:
        if kind == "closing" and r == err_at:  # a closing paragraph after r of n rounds
            paras += _closing_error(rng, p, r, v)
            kind = None
        if r == p.rounds:
            break
        right = p.rule.apply(v)
        if kind in ("value", "branch") and r == err_at:
            paras += _carried_error(rng, p, kind, r, v, right)
            kind = None
        else:
            paras.append((_step(rng, p, r, v, right), True))
            paras += [(a, True) for a in _asides(rng, equation(p.rule, v, right), v, right)]
        v, r = right, r + 1
    paras.append((rng.choice(DONE).format(v=v, n=p.rounds), True))
    paras.append((rng.choice(ANSWER).format(v=v), True))
    return _assemble(paras, wrong_breaks_loss=True)


def _closing(rng: random.Random, p: ChainProblem, v: int, *, through: bool) -> list[tuple[str, bool]]:
    """A wrong closing paragraph for value ``v`` (no loss), with the final answer too
    when ``through``."""
    out = [(rng.choice(DONE).format(v=v, n=p.rounds), False)]
    if through:
        out += [(x, False) for x in rng.choice(ANSWER).format(v=v).split(PARAGRAPH)]
    return out


def _closing_error(rng: random.Random, p: ChainProblem, r: int, v: int) -> list[tuple[str, bool]]:
    """A closing paragraph written after ``r`` of the rounds (value ``v``; a wrong value
    when all are done), without loss, then its fix and redo."""
    bad = v if r < p.rounds else slip(rng, v)
    out = _closing(rng, p, bad, through=rng.random() < CLOSING_WITH_ANSWER)
    fix = rng.choice(FIX_EARLY).format(k=r, n=p.rounds) if r < p.rounds else \
        rng.choice(FIX_FINAL).format(n=p.rounds, v=v, bad=bad)
    return out + [(fix, True), (rng.choice(REDO).format(r=r, v=v), True)]


def _carried_error(rng: random.Random, p: ChainProblem, kind: str, r: int, v: int, right: int) -> list[tuple[str, bool]]:
    """Round ``r`` done wrongly (``kind``), carried on for 0-4 rounds (possibly through
    the closing answer), then fixed and redone. Wrong paragraphs carry no loss."""
    if kind == "branch":
        bad, side = _other_branch(p, v)
        out = [(_step(rng, p, r, v, bad, branch_of=side), False)]
        op = p.rule.branch(side)[2]
        fix = rng.choice(FIX_BRANCH).format(r=r + 1, v=v, cond=p.rule.branch(v)[0], eq=equation(p.rule, v, right), bad=bad)
    else:
        bad, op = slip(rng, right), p.rule.branch(v)[2]
        out = [(_step(rng, p, r, v, bad), False)]
        fix = rng.choice(FIX).format(r=r + 1, eq=equation(p.rule, v, right), bad=bad)
    out += [(a, False) for a in _asides(rng, f"{v} {op} = {bad}", v, bad)]
    w, last = bad, r
    for last in range(r + 1, min(r + 1 + rng.choice(CARRY), p.rounds)):  # carried on, unnoticed
        w2 = p.rule.apply(w)
        out.append((_step(rng, p, last, w, w2), False))
        out += [(a, False) for a in _asides(rng, equation(p.rule, w, w2), w, w2)]
        w = w2
    if last == p.rounds - 1 and rng.random() < THROUGH_ANSWER:
        out += _closing(rng, p, w, through=rng.random() < CLOSING_WITH_ANSWER)
    return out + [(fix, True), (rng.choice(REDO).format(r=r + 1, v=right), True)]


# Look-backs (`errors="recheck"`): every 3-5 rounds the solution redoes the last rounds
# (at most 4) from the values it wrote, and says where a result differs from the one it
# had. A tiny target writes a right result far more reliably than it notices a wrong one
# already written (wrong values: 8 of 111 repaired, docs/testbed_chain.md), so the
# look-back turns the noticing into writing: recompute, then compare the result with the
# one written after the same round, a copy the attention finds by the round's number.
LOOK_BACK = [
    "Let me look back at the last rounds: {items}.",
    "Before going on, let me redo the last rounds: {items}.",
    "A quick look back at the last few rounds: {items}.",
]
LOOK_BACK_OPENINGS = tuple(t.split("{")[0] for t in LOOK_BACK)
LOOK_BACK_SAME = "round {r}: {eq}"
LOOK_BACK_MISS = "round {r}: {eq}, but I wrote {bad}, so that was wrong"
LOOK_BACK_WINDOW = 4           # rounds a look-back covers at most (the draft's 128-token chunk holds ~4)
LOOK_BACK_EVERY = (3, 4, 4, 5)  # rounds between two look-backs
LOOK_BACK_CARRY = (0, 1, 1, 2, 2, 3)  # rounds an error is carried before the look-back finds it
# `errors="resume"`: after a look-back (and its redo), a paragraph that names the next round
# and its count-down exactly as the round's own paragraph will ("round 5 (2 left)"). Without
# it the continue-only draft lost its place after a target's look-back in 6 of 17 of its
# after-takeover first errors: after "...; round 4: 7 + 9 = 16." it wrote "Next, round 4
# with 3 left: 16 is even", redoing the round the look-back had just redone
# (docs/testbed_chain.md, "A draft that only continues look-backs").
RESUME = [
    "Next is round {r} ({left} left), from {v}.",
    "So round {r} ({left} left) comes next, starting from {v}.",
    "Okay, on to round {r} ({left} left) with {v}.",
]


def _look_back(rng: random.Random, p: ChainProblem, rounds: list[tuple[int, int, int]]) -> str:
    """A look-back paragraph over ``rounds`` (round index, value it started from, result
    written), oldest first: each redone from its start value; the first whose written
    result differs ends the paragraph with "but I wrote ..., so that was wrong"."""
    items = []
    for r, a, shown in rounds:
        right = p.rule.apply(a)
        if shown != right:
            items.append(LOOK_BACK_MISS.format(r=r + 1, eq=equation(p.rule, a, right), bad=shown))
            break
        items.append(LOOK_BACK_SAME.format(r=r + 1, eq=equation(p.rule, a, right)))
    return rng.choice(LOOK_BACK).format(items="; ".join(items))


def continue_only(sol: Solution) -> Solution:
    """``sol`` with no loss on its look-back openings (`LOOK_BACK_OPENINGS`): a model trained
    on such lessons learns to go on with a look-back that another model opened (a look-back
    target's takeover cut at the chunk's end, in append mode) and after one, but not to open
    one itself, so its own look-backs cannot become a new source of errors (the look-back
    draft's were half of its first errors, docs/testbed_chain.md)."""
    cuts = sorted((m.start(), m.end()) for o in LOOK_BACK_OPENINGS for m in re.finditer(re.escape(o), sol.text))
    spans = []
    for a, b in sol.loss_spans:
        for c, d in cuts:
            if c < b and d > a:  # an opening inside this span: keep the loss around it only
                if a < c:
                    spans.append((a, c))
                a = max(a, d)
        if a < b:
            spans.append((a, b))
    return Solution(sol.text, spans)


def _solve_with_rechecks(p: ChainProblem, rng: random.Random, *, with_error: bool, resume: bool = False) -> Solution:
    """``solve(errors="recheck")``: a solution with a look-back (`LOOK_BACK`) every 3-5
    rounds. With ``with_error``, one draft-like error (``ERROR_KINDS``): a wrong value or
    branch carried on for 0-3 rounds (no loss), then the look-back that finds it and the
    redo; a closing error fixed as in ``errors="draft"``. With ``resume``
    (``errors="resume"``), every look-back (and redo) that is not after the last round is
    followed by a `RESUME` paragraph naming the next round, its count-down and value."""
    def next_round(done: int, v: int) -> list[tuple[str, bool]]:  # after ``done`` rounds, at ``v``
        if not resume or done >= p.rounds:
            return []
        return [(rng.choice(RESUME).format(r=done + 1, left=p.rounds - done - 1, v=v), True)]

    paras: list[tuple[str, bool]] = [(rng.choice(INTRO), True), (rng.choice(START).format(v=p.start), True)]
    kind = rng.choices(list(ERROR_KINDS), weights=list(ERROR_KINDS.values()))[0] if with_error else None
    err_at = (rng.randrange(1, p.rounds + 1) if kind == "closing" else rng.randrange(p.rounds)) if kind else None
    if kind == "branch" and _other_branch(p, _value_after(p, err_at)) is None:
        kind = "value"
    since: list[tuple[int, int, int]] = []  # the rounds written since the last look-back
    due = rng.choice(LOOK_BACK_EVERY)
    v, r = p.start, 0
    while r <= p.rounds:
        if kind == "closing" and r == err_at:
            paras += _closing_error(rng, p, r, v)
            kind = None
        if r == p.rounds:
            break
        right = p.rule.apply(v)
        if kind in ("value", "branch") and r == err_at:  # wrong, carried on unnoticed, found by a look-back
            if kind == "branch":
                bad, side = _other_branch(p, v)
            else:
                bad, side = slip(rng, right), None
            paras.append((_step(rng, p, r, v, bad, branch_of=side), False))
            op = p.rule.branch(v if side is None else side)[2]  # the branch the wrong paragraph took
            paras += [(a, False) for a in _asides(rng, f"{v} {op} = {bad}", v, bad)]
            since.append((r, v, bad))
            w = bad
            for j in range(r + 1, min(r + 1 + rng.choice(LOOK_BACK_CARRY), p.rounds)):
                w2 = p.rule.apply(w)
                paras.append((_step(rng, p, j, w, w2), False))
                paras += [(a, False) for a in _asides(rng, equation(p.rule, w, w2), w, w2)]
                since.append((j, w, w2))
                w = w2
            if since[-1][0] == p.rounds - 1 and rng.random() < THROUGH_ANSWER:
                paras += _closing(rng, p, w, through=rng.random() < CLOSING_WITH_ANSWER)
            paras.append((_look_back(rng, p, since[-LOOK_BACK_WINDOW:]), True))
            paras.append((rng.choice(REDO).format(r=r + 1, v=right), True))
            paras += next_round(r + 1, right)
            since, due, kind = [], rng.choice(LOOK_BACK_EVERY), None
        else:
            paras.append((_step(rng, p, r, v, right), True))
            paras += [(a, True) for a in _asides(rng, equation(p.rule, v, right), v, right)]
            since.append((r, v, right))
            if len(since) >= due:
                paras.append((_look_back(rng, p, since[-LOOK_BACK_WINDOW:]), True))
                paras += next_round(r + 1, right)
                since, due = [], rng.choice(LOOK_BACK_EVERY)
        v, r = right, r + 1
    paras.append((rng.choice(DONE).format(v=v, n=p.rounds), True))
    paras.append((rng.choice(ANSWER).format(v=v), True))
    return _assemble(paras, wrong_breaks_loss=True)


def reference_solution(p: ChainProblem) -> str:
    """A deterministic clean solution (seeded by the problem id)."""
    return solve(p, random.Random(p.id)).text


_EQ = re.compile(r"(\d+) ([+\-/]) (\d+) = (\d+)")
_ROUND = re.compile(r"[Rr]ound (\d+)")
_LEFT = re.compile(r"(\d+) left")
_NUM = re.compile(r"\d+")
_BOXED = re.compile(r"\\boxed\{(\d+)\}")


def _eq_value(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "/": a // 2 if b == 2 else -1}[op]


def _value_after(p: ChainProblem, rounds: int) -> int:
    v = p.start
    for _ in range(rounds):
        v = p.rule.apply(v)
    return v


def is_correction(paragraph: str) -> bool:
    """A "Wait, ..." paragraph that says an earlier one was wrong (`FIX`, `FIX_BRANCH`,
    `FIX_EARLY`, `FIX_FINAL`'s words)."""
    low = paragraph.lower()
    return "not right" in low or "mistake" in low or "was wrong" in low or "recheck" in low


def first_error(p: ChainProblem, text: str, *, complete: bool = True, labels: bool = False) -> int | None:
    """Character offset of the first paragraph of ``text`` (a solution so far) that is
    wrong for ``p``, or None. A round paragraph is wrong when it starts from another value
    than the running one, takes the other branch of the rule, computes wrongly, counts the
    rounds left wrongly (the count-down says when to stop) or goes past the last round; a
    check or progress paragraph when its equation or value is wrong; the closing
    paragraphs when rounds were skipped or the value differs. With ``complete=False`` the
    last paragraph is taken as cut off (a chunk ending mid-way) and is judged only once
    whole. A "Wait, ..." correction followed by its redo paragraph (the target's repair)
    resets the running value to the right one.

    ``labels``: also a round paragraph that names another round than the next one. Off
    by default: the draft's most common slip is a wrong round number with the right
    count-down and value ("Round 2 (2 left)", then "Round 4 (1 left)"), which changes no
    result: of the 71 draft solutions whose first paragraph flagged by the strict reading
    was such a slip, 54 still ended with the right answer, against 11 of the 63 whose
    first flagged paragraph was another error (docs/testbed_chain.md)."""
    v, k = p.start, 0
    pos = 0
    paras = text.split(PARAGRAPH)
    for idx, para in enumerate(paras):
        off, pos = pos, pos + len(para) + len(PARAGRAPH)
        if not complete and idx == len(paras) - 1:
            break
        low = para.lower()
        eqs = _EQ.findall(para)
        nums = [int(x) for x in _NUM.findall(para)]
        m = _ROUND.search(para)
        if is_correction(para):
            continue  # a correction: its redo paragraph sets the value
        if para.startswith(LOOK_BACK_OPENINGS):  # a look-back that found nothing: its sums must be right
            if any(int(c) != _eq_value(int(a), op, int(b)) for a, op, b, c in eqs):
                return off
            continue
        if low.startswith(("so after round", "so the correct value")):
            if m:
                k = int(m.group(1))
                v = _value_after(p, min(k, p.rounds))
            if not nums or nums[-1] != v:
                return off
            continue
        if m and eqs:
            a, op, b, c = eqs[0]
            a, b, c = int(a), int(b), int(c)
            left = _LEFT.search(para)
            if k >= p.rounds or a != v or (left and int(left.group(1)) != p.rounds - k - 1) \
                    or (labels and int(m.group(1)) != k + 1):
                return off
            want = p.rule.branch(v)[2]
            if f"{op} {b}" != want or c != _eq_value(a, op, b):
                return off
            v, k = c, k + 1
            continue
        if eqs:
            if any(int(c) != _eq_value(int(a), op, int(b)) for a, op, b, c in eqs):
                return off
            continue
        box = _BOXED.search(para)
        if box or low.startswith(("that was the last", "all ", "so after every")):
            if k != p.rounds or (nums and nums[-1] != v):
                return off
            continue
        if k == 0 and nums:  # the start paragraph
            if nums[-1] != p.start:
                return off
            continue
        if nums and nums[-1] != v:  # a progress paragraph
            return off
    return None


def first_error_kind(p: ChainProblem, text: str, *, complete: bool = False) -> str | None:
    """The kind of ``text``'s first error (`first_error`; ``complete`` as there: by default
    the last paragraph is taken as cut off), or None: `ERROR_KINDS`' names ("value",
    "branch", "closing"), "look-back" for a look-back (`LOOK_BACK`) with a wrong sum, or
    "count" for a round paragraph with the right branch and value but a wrong count-down
    or start value. What a repair depends on (docs/testbed_chain.md)."""
    off = first_error(p, text, complete=complete)
    if off is None:
        return None
    para = text[off:].split(PARAGRAPH)[0]
    if para.startswith(LOOK_BACK_OPENINGS):
        return "look-back"
    eqs, m = _EQ.findall(para), _ROUND.search(para)
    if m and eqs:
        a, op, b, c = eqs[0]
        if f"{op} {b}" != p.rule.branch(int(a))[2]:
            return "branch"
        return "value" if int(c) != _eq_value(int(a), op, int(b)) else "count"
    return "closing" if _BOXED.search(para) or not eqs else "value"


def error_washes_out(p: ChainProblem, text: str, *, complete: bool = False) -> bool:
    """Whether ``text``'s first error (`first_error`, ``complete`` as there) would leave the
    answer right anyway: it is a round paragraph whose written result, carried on
    faithfully for the rounds its count-down says are left, ends at ``p``'s answer. A
    parity rule's values fall into short cycles, so a wrong value or branch early on is
    often forgotten by the end: a continuation that ends right after such an error has
    not repaired anything (docs/testbed_chain.md). False for every other error, or none."""
    off = first_error(p, text, complete=complete)
    if off is None:
        return False
    para = text[off:].split(PARAGRAPH)[0]
    eqs, m, left = _EQ.findall(para), _ROUND.search(para), _LEFT.search(para)
    if not (eqs and m and left):
        return False
    v = int(eqs[0][3])
    for _ in range(int(left.group(1))):
        v = p.rule.apply(v)
    return str(v) == p.answer
