"""summary.json: accuracy, takeover rates with binomial intervals, tokens, timing."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict

from atts.tasks.grading import accuracy


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


def takeover_counts(records: list[dict]) -> tuple[Counter, Counter]:
    """Per turn: calibrated decisions (first attempt of a turn) and takeovers among them."""
    n, k = Counter(), Counter()
    for rec in records:
        for s in rec["steps"]:
            if s.get("attempt") == 0 and s.get("decision"):
                n[s["turn"]] += 1
                k[s["turn"]] += s["decision"] == "takeover"
    return n, k


def summarize(records: list[dict], *, policy: str, dataset: str, split: str, n_questions: int,
              samples_per_question: int, alpha: float | None, wall_seconds: float, ran: int) -> dict:
    complete = [r for r in records if r["status"] in ("done", "truncated")]
    by_q = defaultdict(list)
    for r in complete:
        by_q[r["question_index"]].append((r["answer"], bool(r["correct"])))
    acc = accuracy(by_q)
    n, k = takeover_counts(complete)
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
        "pass@1": acc.pass_at_1, f"maj@{samples_per_question}": acc.maj_at_k, "maj@k": acc.maj_at_k,
        f"pass@{samples_per_question}": acc.pass_at_k, "pass@k": acc.pass_at_k,
        "alpha": alpha,
        "takeover_rate": rate(sum(k.values()), sum(n.values())),
        "takeover_rate_by_turn": [{"turn": t, **rate(k[t], n[t])} for t in sorted(n)],
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
