"""Every comparison policy on the testbed against real SGLang, through `atts compare`:
one module-scoped comparison (6 questions x 4 samples, alpha 0.5) backs one test per
policy, each asserting the policy's definition on every recorded step."""

import argparse
import asyncio
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest

from atts.commands.compare import ROW_KEYS, build_entries, compare_async
from atts.method.policies import judge_score
from atts.runtime.summary import wilson_interval
from conftest import ROOT

pytestmark = pytest.mark.server

ALPHA = 0.5
N_QUESTIONS, K = 6, 4
POLICIES = ("random_takeover,sync_ranked,specreason,specreason_conformal,spec_thinking,random_switch,atts_self")
THRESHOLD = 6.5  # the chain target's average judge scores straddle it
KEYWORD = "round"  # in some 10-token lookaheads of the draft and not in others
PARAMS = ["specreason.score=average", f"specreason.threshold={THRESHOLD}",
          "specreason_conformal.grouping=marginal", "atts_self.grouping=marginal", "atts_self.max_resample=2",
          f'spec_thinking.negative=["{KEYWORD}"]', "spec_thinking.positive=[]", "spec_thinking.lookahead_tokens=10",
          "random_switch.ratio=1.0"]


def _args(testbed, out: Path, policies=POLICIES, params=PARAMS):
    sets = ["draft.launch=false", "target.launch=false", f"draft.urls=[{testbed.urls['draft']}]",
            f"target.urls=[{testbed.urls['target']}]", "calibration.limit=15"]
    return argparse.Namespace(config=str(ROOT / "configs/testbed.yaml"), policies=policies, output=str(out),
                              limit=N_QUESTIONS, samples_per_question=K, alpha=ALPHA, set=sets, param=params,
                              no_progress=True)


@pytest.fixture(scope="module")
def cmp(testbed, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    base, entries = build_entries(_args(testbed, out))
    res = asyncio.run(compare_async(base, entries, out, progress=False))
    recs = {}
    for e in entries:
        recs[e.label] = [json.loads(p.read_text()) for p in sorted((out / e.label / "samples").glob("*.json"))]
    return {"out": out, "result": res, "records": recs, "rows": {r["name"]: r for r in res["rows"]}}


def _judged(recs):
    return [s for r in recs for s in r["steps"] if s.get("attempt") == 0 and s.get("decision")]


def test_compare_writes_table_json_and_plot(cmp):
    res, out = cmp["result"], cmp["out"]
    on_disk = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in on_disk["rows"]] == POLICIES.split(",")
    for r in on_disk["rows"]:
        assert set(ROW_KEYS) <= set(r), r
        assert r["n_samples_completed"] == N_QUESTIONS * K and r["n_failed"] == 0
        assert r["latency_median"] > 0 and r["wall_seconds"] > 0
    md = (out / "compare.md").read_text()
    table = md.split("\n\n")[0]  # the main table; the seeds note and paired statistics follow it
    assert table.count("\n") == 1 + len(res["rows"]) and "| random_takeover |" in table
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # identical questions and samples in every run
    keys = {lab: sorted((r["question_id"], r["repeat"]) for r in recs) for lab, recs in cmp["records"].items()}
    assert len({tuple(v) for v in keys.values()}) == 1


def test_random_takeover_is_a_seeded_coin_at_rate_alpha(cmp):
    steps = _judged(cmp["records"]["random_takeover"])
    assert len(steps) >= 50
    for s in steps:  # the decision is exactly the coin, recorded as p_value
        assert (s["decision"] == "takeover") == (s["p_value"] < ALPHA) and s["role"] == "draft"
        assert s["kept"] == (s["decision"] == "accept")
    k = sum(s["decision"] == "takeover" for s in steps)
    lo, hi = wilson_interval(k, len(steps))
    assert lo <= ALPHA <= hi, (k, len(steps))


def test_sync_ranked_gives_exactly_b_takeovers_per_question_turn(cmp):
    groups = defaultdict(list)
    for r in cmp["records"]["sync_ranked"]:
        for s in _judged([r]):
            groups[(r["question_id"], s["turn"])].append(s)
    assert len(groups) >= N_QUESTIONS * 2
    for key, steps in groups.items():
        n, b = steps[0]["n_ranked"], steps[0]["budget"]
        assert all(s["n_ranked"] == n and s["budget"] == b for s in steps)
        assert len(steps) == n  # every running sample of the question joined the turn
        assert b in (math.floor(ALPHA * n), math.ceil(ALPHA * n))
        taken = [s for s in steps if s["decision"] == "takeover"]
        assert len(taken) == b, key
        kept = [s for s in steps if s["decision"] == "accept"]
        if taken and kept:  # the highest-PPL chunks go to the target
            assert min(round(s["ppl"], 5) for s in taken) >= max(round(s["ppl"], 5) for s in kept)
        assert sorted(s["rank"] for s in steps) == list(range(n))


def test_sync_ranked_resumes_with_part_of_a_question_done(cmp, testbed):
    """Samples already on disk take no part in the barrier: a rerun with some of a
    question's samples missing finishes instead of waiting for them."""
    from atts.commands.evaluate import evaluate_async
    from atts.runtime.session import build_roles, close_roles

    out = cmp["out"] / "sync_ranked" / "samples"
    removed = sorted(out.glob("*.json"))[1:6]  # question 0's repeats 1-3 and question 1's 0-1
    for p in removed:
        p.unlink()
    base, entries = build_entries(_args(testbed, cmp["out"], policies="sync_ranked", params=[]))

    async def go():
        roles = build_roles(base, {r: list(getattr(base, r).urls) for r in ("draft", "target")})
        try:
            return await asyncio.wait_for(evaluate_async(entries[0].cfg, roles, progress=False), 300)
        finally:
            await close_roles(roles)

    s = asyncio.run(go())
    assert s["samples_this_invocation"] == len(removed) and s["n_samples_completed"] == N_QUESTIONS * K


def test_specreason_accepts_exactly_the_steps_scored_at_or_above_threshold(cmp):
    steps = _judged(cmp["records"]["specreason"])
    assert steps
    for s in steps:
        assert (s["decision"] == "accept") == (s["judge_score"] >= THRESHOLD) and s["kept"] == (s["decision"] == "accept")
        # the score is the digit-restricted expectation over the judge's top logprobs
        top = [(lp, 0, t) for lp, t in s["judge_top"]]
        assert abs(judge_score(s["judge_token"], top, "average") - s["judge_score"]) < 1e-3
        assert any(q["kind"] == "generate" and q["role"] == "target" and q["output_tokens"] == 1
                   for q in s["requests"])
    assert {s["decision"] for s in steps} == {"accept", "takeover"}
    for r in cmp["records"]["specreason"]:  # a rejected step is followed by the target's step
        for i, s in enumerate(r["steps"]):
            if s.get("decision") == "takeover":
                assert r["steps"][i + 1]["role"] == "target" and r["steps"][i + 1]["turn"] == s["turn"]


def test_specreason_conformal_takes_over_iff_p_value_at_most_alpha(cmp):
    steps = _judged(cmp["records"]["specreason_conformal"])
    assert steps and {s["decision"] for s in steps} == {"accept", "takeover"}
    for s in steps:
        assert (s["decision"] == "takeover") == (s["p_value"] <= ALPHA) and s["group"] == "all"
    cal = [p for p in cmp["out"].glob("calibration-judge-*.json")]
    assert len(cal) == 1 and json.loads(cal[0].read_text())["meta"]["score"].startswith("judge:average")


def test_spec_thinking_takes_over_exactly_when_the_lookahead_holds_a_keyword(cmp):
    n_take = 0
    for r in cmp["records"]["spec_thinking"]:
        for i, s in enumerate(r["steps"]):
            if "lookahead" not in s:
                continue
            assert s["n_tokens"] <= 10
            assert (s["decision"] == "takeover") == (KEYWORD in s["text"].lower())
            if s["decision"] == "takeover":
                n_take += 1
                nxt = r["steps"][i + 1]
                assert not s["kept"] and nxt["role"] == "target" and nxt["turn"] == s["turn"]
    assert n_take > 0


def test_random_switch_picks_the_target_with_probability_one_half(cmp):
    steps = _judged(cmp["records"]["random_switch"])
    for s in steps:
        assert (s["role"] == "target") == (s["decision"] == "takeover") == (s["p_value"] < 0.5)
    k = sum(s["role"] == "target" for s in steps)
    lo, hi = wilson_interval(k, len(steps))
    assert lo <= 0.5 <= hi, (k, len(steps))


def test_atts_self_resamples_then_keeps_the_lowest_ppl_attempt(cmp, testbed):
    fallbacks = 0
    for r in cmp["records"]["atts_self"]:
        assert r["tokens"]["target_generated"] == 0 and r["tokens"].get("target_scored", 0) == 0
        by_turn = defaultdict(list)
        for s in r["steps"]:
            by_turn[s["turn"]].append(s)
        for turn, steps in by_turn.items():
            assert all(s["role"] == "draft" for s in steps)
            assert [s["attempt"] for s in steps] == list(range(len(steps))) and len(steps) <= 3
            kept = [s for s in steps if s["kept"]]
            assert len(kept) == 1
            scored = [s for s in steps if s.get("decision")]
            if any(s["decision"] == "accept" for s in scored):
                assert kept[0] is steps[-1] and kept[0]["decision"] == "accept"
            elif scored:  # every attempt failed: the lowest-PPL one is kept
                assert len(steps) == 3 and kept[0].get("kept_lowest_ppl")
                assert kept[0]["ppl"] == min(s["ppl"] for s in steps)
                fallbacks += 1
            for s in scored:  # the draft server scored its own chunk
                assert s["requests"][1]["kind"] == "score" and s["requests"][1]["url"] == testbed.urls["draft"]
    assert fallbacks > 0
