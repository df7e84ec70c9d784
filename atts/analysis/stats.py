"""Honest uncertainty for per-sample metrics: questions are the unit of resampling.

A run's samples are not independent: the K samples of a question share its difficulty,
and a sample's takeover decisions share its history. A binomial (Wilson) interval over
pooled samples or decisions treats them as independent and is too narrow (measured
here: on clustered data like a real run's, its 95% interval covers the truth in a third
of the replications, the cluster bootstrap's in 93%; tests/unit/test_stats.py). The cluster bootstrap resamples
whole questions with replacement, which keeps every within-question correlation.

Contents:
- `cluster_bootstrap_ratio`: seeded percentile bootstrap of sum(num)/sum(den) over
  questions (each question one (num, den) pair). It covers means of per-question values
  (den = 1), per-sample rates (den = samples of the question) and the takeover rate
  (num = takeovers, den = decisions of the question): a ratio of sums, resampled as one.
- `pass_at_k`: Chen et al. (2021)'s unbiased estimator, for every k <= n.
- `majority_correct`: maj@k with answers grouped by mathematical equivalence.
- `metrics_with_intervals`: all of these for a run's sample records, failed samples
  counted (as incorrect, in the denominators) and reported.

Pure: numpy and the grading contract only; no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from atts.tasks.grading import normalise_answer
from atts.records import first_attempt_decision

N_BOOT = 2000  # replicates: the 2.5% / 97.5% percentiles then move by < 0.005 between seeds at n = 100 questions
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its cluster-bootstrap interval and standard error."""

    value: float | None
    low: float | None
    high: float | None
    stderr: float | None
    n_clusters: int

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "stderr": self.stderr,
                "n_clusters": self.n_clusters, "interval": "cluster_bootstrap"}


def cluster_bootstrap_ratio(num: Sequence[float], den: Sequence[float], *, n_boot: int = N_BOOT, seed: int = 0,
                            level: float = LEVEL) -> Interval:
    """Percentile interval and bootstrap standard error of sum(num) / sum(den), resampling
    the clusters (index i: one question's num[i], den[i]) with replacement.

    Replicates whose resampled denominator is 0 (a rare turn seen by few questions) are
    dropped; with fewer than 2 clusters there is no interval (None)."""
    num_a, den_a = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    n = len(num_a)
    if n != len(den_a):
        raise ValueError("num and den differ in length")
    total = den_a.sum()
    value = float(num_a.sum() / total) if total > 0 else None
    if n < 2 or value is None:
        return Interval(value, None, None, None, n)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))  # each row: n questions drawn with replacement
    d = den_a[idx].sum(axis=1)
    ok = d > 0
    reps = num_a[idx].sum(axis=1)[ok] / d[ok]  # the ratio of sums, per replicate
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return Interval(value, float(lo), float(hi), float(reps.std(ddof=1)), n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with ``c`` correct among ``n`` samples (Chen et
    al. 2021): the probability that k samples drawn without replacement hold a correct
    one, 1 - C(n-c, k) / C(n, k). Needs k <= n."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the numerically stable form of the binomial ratio
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


Equivalent = Callable[[list[tuple[str, str, str]]], list[bool]]  # Grader.grade: (pred, gold, kind) -> same?


def majority_correct(samples: Sequence[tuple[str | None, bool]], kind: str = "math",
                     equivalent: Equivalent | None = None) -> bool:
    """maj@k of one question: is the most common answer correct, answers grouped by
    mathematical equivalence?

    Grouping, cheapest first: (1) answers equal after `normalise_answer` form a group;
    (2) every correct answer is equivalent to the gold, hence to each other: the correct
    groups merge without a check; (3) incorrect groups are merged pairwise with
    ``equivalent`` (the project's grader: `atts.grading.Grader.grade`), and only when
    the question has a correct answer that the incorrect ones together could outvote.
    Ties go to the group seen first. Samples without an answer do not vote."""
    groups: dict[str, list] = {}  # normalised answer -> [count, correct, first position]
    for pos, (ans, ok) in enumerate(samples):
        if ans is None:
            continue
        g = groups.setdefault(normalise_answer(ans), [0, bool(ok), pos, ans])
        g[0] += 1
    if not groups:
        return False
    right = [g for g in groups.values() if g[1]]
    wrong = [g for g in groups.values() if not g[1]]
    if not right:
        return False  # no correct answer to win: no grader call, however the wrong ones group
    merged = [[sum(g[0] for g in right), True, min(g[2] for g in right)]]
    if equivalent is not None and len(wrong) > 1 and sum(g[0] for g in wrong) >= merged[0][0]:
        wrong = _merge_equivalent(wrong, kind, equivalent)
    else:
        wrong = [[g[0], False, g[2]] for g in wrong]
    best = max(merged + wrong, key=lambda g: (g[0], -g[2]))
    return best[1]


def _merge_equivalent(groups: list[list], kind: str, equivalent: Equivalent) -> list[list]:
    """Union-find over groups ([count, correct, first, answer]); one batched grader call
    for every pair."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = [(i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))]
    same = equivalent([(groups[j][3], groups[i][3], kind) for i, j in pairs])
    for (i, j), s in zip(pairs, same):
        if s:
            parent[root(j)] = root(i)
    out: dict[int, list] = {}
    for i, g in enumerate(groups):
        m = out.setdefault(root(i), [0, False, g[2]])
        m[0] += g[0]
        m[2] = min(m[2], g[2])
    return list(out.values())


# ----------------------------------------------------------------------------- a run's records

FAILED = "failed"


def metrics_with_intervals(records: Sequence[dict], samples_per_question: int, *, equivalent: Equivalent | None = None,
                           n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """pass@1, pass@k for every k <= K, maj@K, takeover rate overall and per turn, each
    an `Interval` from the cluster bootstrap over questions, plus the failure counts.

    ``records``: sample records (`atts.runner.sample_record`): ``question_index``,
    ``status``, ``answer``, ``correct``, ``kind``, ``steps``. A failed sample counts as
    a sample without a correct answer: it stays in every accuracy denominator
    (``n_failed`` says how many). pass@k of a question with fewer than k recorded
    samples (a partial run) is left out of that k's estimate (``n_clusters`` says how
    many questions it has). Takeover decisions are the first attempt of a turn with a
    ``decision`` (as `atts.summary.takeover_counts`); their rate is a ratio of sums per
    question, bootstrapped as such."""
    by_q: dict[object, list[dict]] = defaultdict(list)
    for r in records:
        by_q[r["question_index"]].append(r)
    qs = sorted(by_q, key=str)
    n = [len(by_q[q]) for q in qs]
    c = [sum(bool(r.get("correct")) and r["status"] != FAILED for r in by_q[q]) for q in qs]
    out: dict = {"n_failed": sum(r["status"] == FAILED for r in records), "n_questions": len(qs)}
    boot = dict(n_boot=n_boot, seed=seed)
    out["pass@1"] = cluster_bootstrap_ratio(c, n, **boot)  # = mean of c/n over samples
    out["pass_at"] = {}
    for k in range(1, samples_per_question + 1):
        vals = [pass_at_k(nq, cq, k) for nq, cq in zip(n, c) if nq >= k]
        out["pass_at"][k] = cluster_bootstrap_ratio(vals, [1.0] * len(vals), **boot)
    maj = [float(majority_correct([(r.get("answer") if r["status"] != FAILED else None,
                                    bool(r.get("correct")) and r["status"] != FAILED) for r in by_q[q]],
                                  by_q[q][0].get("kind") or "math", equivalent)) for q in qs]
    out["maj@k"] = cluster_bootstrap_ratio(maj, [1.0] * len(maj), **boot)
    turns: set[int] = set()
    dec = {q: defaultdict(lambda: [0, 0]) for q in qs}  # question -> turn -> [takeovers, decisions]
    for q in qs:
        for r in by_q[q]:
            for s in r.get("steps") or ():
                if first_attempt_decision(s):
                    cell = dec[q][s["turn"]]
                    cell[0] += s["decision"] == "takeover"
                    cell[1] += 1
                    turns.add(s["turn"])
    k_all = [sum(v[0] for v in dec[q].values()) for q in qs]
    n_all = [sum(v[1] for v in dec[q].values()) for q in qs]
    out["takeover"] = cluster_bootstrap_ratio(k_all, n_all, **boot)
    out["takeover_by_turn"] = {t: cluster_bootstrap_ratio([dec[q][t][0] for q in qs if dec[q][t][1]],
                                                          [dec[q][t][1] for q in qs if dec[q][t][1]], **boot)
                               for t in sorted(turns)}
    return out

