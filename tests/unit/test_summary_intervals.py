"""Issue 13 item 6 wired into summary.json: every rate and accuracy has a clustered
interval, pass@k for every k <= K, takeover objects clustered, failed samples counted."""

import pytest

from atts.runtime.summary import summarize


def _rec(q, r, correct, status="done", decisions=(), answer=None):
    steps = [{"turn": t, "attempt": 0, "decision": d, "kept": True, "role": "draft"} for t, d in enumerate(decisions)]
    ok = status != "failed"
    return {"key": f"q{q:05d}-r{r:03d}", "question_index": q, "status": status, "kind": "math",
            "answer": (answer or ("7" if correct else "8")) if ok else None, "correct": correct if ok else None,
            "error": None if ok else "target: gave up", "stop_reason": "answer" if ok else None,
            "tokens": {"draft_generated": 10}, "steps": steps, "latency_s": 1.0}


def _records():
    recs = []
    for q in range(6):
        for r in range(4):
            failed = q == 5 and r == 3
            recs.append(_rec(q, r, correct=(q + r) % 3 != 0, status="failed" if failed else "done",
                             decisions=["takeover" if (q * r) % 2 else "accept", "accept" if q % 2 else "takeover"]))
    return recs


def test_summary_has_clustered_intervals_for_every_rate():
    s = summarize(_records(), policy="atts", dataset="d", split="test", n_questions=6, samples_per_question=4,
                  alpha=0.4, wall_seconds=1.0, ran=24)
    for m in ("pass@1", "maj@k", "maj@4", "pass@k", "pass@2", "pass@3", "pass@4"):
        lo, hi = s[f"{m}_ci"]
        assert lo <= s[m] <= hi and s[f"{m}_stderr"] >= 0, m
    assert s["pass@1_stderr"] > 0 and s["pass@1_ci"][0] < s["pass@1_ci"][1]
    assert s["n_failed"] == 1
    assert s["pass@1"] == pytest.approx(sum((q + r) % 3 != 0 for q in range(6) for r in range(4)
                                            if not (q == 5 and r == 3)) / 24)  # the failed sample: incorrect, in the denominator
    tr = s["takeover_rate"]
    assert tr["interval"] == "cluster_bootstrap" and tr["low"] <= tr["rate"] <= tr["high"] and tr["n"] == 48
    assert all(t["interval"] == "cluster_bootstrap" and t["low"] <= t["rate"] <= t["high"]
               for t in s["takeover_rate_by_turn"])
    again = summarize(_records(), policy="atts", dataset="d", split="test", n_questions=6, samples_per_question=4,
                      alpha=0.4, wall_seconds=1.0, ran=24)
    assert again["pass@1_ci"] == s["pass@1_ci"] and again["takeover_rate"] == tr  # seeded


def test_one_question_falls_back_to_a_labelled_wilson_interval():
    s = summarize([_rec(0, 0, True, decisions=["takeover", "accept"])], policy="atts", dataset="d", split="test",
                  n_questions=1, samples_per_question=1, alpha=0.4, wall_seconds=1.0, ran=1)
    assert s["takeover_rate"]["interval"] == "wilson" and s["pass@1_ci"] is None
