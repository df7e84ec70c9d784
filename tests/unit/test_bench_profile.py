"""`atts bench`'s cost terms (REAL_WORKLOAD.md) from a row's records: chunk lengths,
draft attempts per turn, scoring time against a target chunk, client-side queueing."""

from atts.commands.bench import cost_profile, format_markdown


def _req(kind, role, queue, service):
    return {"kind": kind, "role": role, "submitted": 0.0, "queue_s": queue, "service_s": service}


def _record(key):
    # turn 0: draft chunk (100 tokens) scored, accepted; turn 1: a draft attempt rejected and
    # resampled (replace mode: 2 attempts), then the target writes 50 tokens
    d = lambda turn, att: {"turn": turn, "attempt": att, "role": "draft", "n_tokens": 100, "kept": att == 0 and turn == 0,
                           "requests": [_req("generate", "draft", 0.5, 1.5), _req("score", "target", 0.0, 0.1)]}
    t = {"turn": 1, "attempt": 2, "role": "target", "n_tokens": 50, "kept": True,
         "requests": [_req("generate", "target", 1.0, 3.0)]}
    return {"key": key, "steps": [d(0, 0), d(1, 0), d(1, 1), t], "tokens": {"target_generated": 50}}


def test_cost_profile_terms():
    p = cost_profile([_record("a"), _record("b")])
    assert p["draft_chunk_tokens"] == 100 and p["target_chunk_tokens"] == 50
    assert p["attempts_per_turn"] == 1.5  # 3 draft chunks over 2 turns
    assert abs(p["score_over_target_chunk"] - 0.1 / 3.0) < 1e-12
    assert p["queue_share_draft"] == 0.25  # 0.5 waiting of 2.0 in all
    assert abs(p["queue_share_target"] - 1.0 / 4.3) < 1e-12
    assert p["target_tokens_per_sample"] == 50


def test_cost_profile_in_the_markdown():
    row = {"name": "atts", "max_in_flight": 4, "in_flight": 4, "wall_seconds": 1.0, "latency_median": 1.0,
           "latency_p90": 1.0, "samples_per_second": 1.0, "pass@1": 1.0, "takeover_rate": 0.5,
           "target_chunk_share": 0.5, "cache_hit_rate_scoring": None, "pre_generated_share": None,
           "profile": cost_profile([_record("a")])}
    md = format_markdown({"rows": [row], "orchestrator": {}, "targets": [], "notes": []})
    assert "| atts | 4 | 100.0 | 50.0 | 1.50 | 0.033 | 0.25 / 0.23 | 50 |" in md
