"""summary.json: accuracy, takeover rates, tokens, timing.

Every rate and accuracy carries a 95% interval from a seeded cluster bootstrap over
questions (`atts.analysis.stats`): ``<metric>_ci: [low, high]`` and ``<metric>_stderr``;
the takeover objects' ``low`` / ``high`` are the clustered ones (``"interval":
"cluster_bootstrap"``; the pooled Wilson interval, labelled ``"wilson"``, only where
fewer than two questions made decisions). Failed samples stay in the accuracy
denominators as incorrect (``n_failed`` counts them)."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from atts.analysis.stats import Interval, metrics_with_intervals
from atts.tasks.grading import Grader, accuracy
from atts.records import COMPLETE, first_attempt_decision


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(k: int, n: int) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else None, "k": k, "n": n, "low": lo, "high": hi}


def quantile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def clustered_rate(k: int, n: int, iv: Interval) -> dict:
    """A takeover rate object: pooled k/n with the cluster-bootstrap interval (Wilson's
    only when the bootstrap has fewer than two questions to resample)."""
    if iv.low is None:
        return rate(k, n) | {"stderr": None, "interval": "wilson"}
    return {"rate": k / n if n else None, "k": k, "n": n, "low": iv.low, "high": iv.high, "stderr": iv.stderr,
            "interval": "cluster_bootstrap"}


def with_interval(name: str, iv: Interval) -> dict:
    """``{name: value, name_ci: [low, high] | None, name_stderr: se | None}``."""
    return {name: iv.value, f"{name}_ci": None if iv.low is None else [iv.low, iv.high], f"{name}_stderr": iv.stderr}


def takeover_counts(records: list[dict]) -> tuple[Counter, Counter]:
    """Per turn: calibrated decisions (first attempt of a turn) and takeovers among them."""
    n, k = Counter(), Counter()
    for rec in records:
        for s in rec["steps"]:
            if first_attempt_decision(s):
                n[s["turn"]] += 1
                k[s["turn"]] += s["decision"] == "takeover"
    return n, k


def summarize(records: list[dict], *, policy: str, dataset: str, split: str, n_questions: int,
              samples_per_question: int, alpha: float | None, wall_seconds: float, ran: int) -> dict:
    complete = [r for r in records if r["status"] in COMPLETE]
    K = samples_per_question
    with Grader(1) as grader:  # maj@k merges equivalent answers; a worker starts only if needed
        m = metrics_with_intervals(records, K, equivalent=grader.grade)  # issue 13 item 6: failed samples included
    n, k = takeover_counts(records)
    accuracy = with_interval("pass@1", m["pass@1"]) | with_interval(f"maj@{K}", m["maj@k"]) \
        | with_interval("maj@k", m["maj@k"]) | with_interval("pass@k", m["pass_at"][K])
    for j, iv in m["pass_at"].items():
        accuracy |= with_interval(f"pass@{j}", iv)  # unbiased (Chen et al. 2021), every k <= K
    tokens = Counter()
    chunks = Counter()
    for r in complete:
        tokens.update(r["tokens"])
        for s in r["steps"]:
            if s.get("kept"):
                chunks[s["role"]] += 1
    lat = [r["latency_s"] for r in complete]
    return {
        "policy": policy, "dataset": dataset, "split": split,
        "n_questions": n_questions, "samples_per_question": samples_per_question,
        "n_samples_expected": n_questions * samples_per_question,
        "n_samples_completed": len(complete),
        "n_failed": sum(r["status"] == "failed" for r in records),
        "n_truncated": sum(r["status"] == "truncated" for r in records),
        "failures": Counter(r.get("error") or "?" for r in records if r["status"] == "failed").most_common(5),
        **accuracy,
        "accuracy_denominator": "completed + failed samples (a failed sample counts as incorrect)",
        "alpha": alpha,
        "takeover_rate": clustered_rate(sum(k.values()), sum(n.values()), m["takeover"]),
        "takeover_rate_by_turn": [{"turn": t, **clustered_rate(k[t], n[t], m["takeover_by_turn"][t])}
                                  for t in sorted(n)],
        "target_chunk_share": chunks["target"] / max(1, sum(chunks.values())),
        "tokens": {"draft": {"generated": tokens["draft_generated"],
                             # pipelining: pre-generated chunks discarded after / cancelled before completion
                             "wasted": tokens["draft_wasted"], "cancelled_requests": tokens["draft_cancelled"]},
                   "target": {"generated": tokens["target_generated"], "scored": tokens["target_scored"]}},
        "stop_reasons": dict(Counter(r.get("stop_reason") for r in complete)),
        "wall_seconds": wall_seconds,
        "samples_this_invocation": ran,
        "samples_per_second": ran / wall_seconds if wall_seconds > 0 else None,
        "latency_median": statistics.median(lat) if lat else None,
        "latency_p90": quantile(lat, 0.9),
    }


def budget_accuracy(records: list[dict], alpha: float) -> dict:
    """The research code's budget accuracy (issue 13 item 7): a question's K samples at a
    turn are a budget group that should hand B = alpha * n of its n judged chunks to the
    target; accuracy = 1 - |actual - B| / B per (question, turn) group (not clipped: a
    group with more than 2B takeovers scores below 0), averaged over groups, and over the
    turn-0 groups alone (the turn every sample reaches)."""
    n, k = Counter(), Counter()
    for rec in records:
        for s in rec["steps"]:
            if s.get("attempt") == 0 and s.get("decision"):
                g = (rec["question_id"], s["turn"])
                n[g] += 1
                k[g] += s["decision"] == "takeover"
    acc = {g: 1 - abs(k[g] - alpha * n[g]) / (alpha * n[g]) for g in n}  # 1 - |actual - B| / B, B = alpha * n
    turn0 = [a for (_, t), a in acc.items() if t == 0]
    return {"mean": statistics.fmean(acc.values()) if acc else None,
            "turn0_mean": statistics.fmean(turn0) if turn0 else None, "n_groups": len(acc),
            "definition": "per (question, turn): 1 - |takeovers - alpha*n| / (alpha*n), n = judged chunks"}
