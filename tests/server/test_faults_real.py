"""Faults between atts and real SGLang servers (the testbed), injected by the loopback
proxy `atts.faults.FaultProxy`: runs complete at 5% and 30% faults, every sample is
recorded exactly once, an exhausted request fails its sample with the reason (never a
made-up number), a server that goes away and comes back is waited for, a context
overflow ends a sample as `truncated`."""

import json
import math
import threading
import time

import pytest

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.serving.faults import KINDS, FaultProxy
from atts.runtime.session import run_with_roles

pytestmark = pytest.mark.server

LIMIT, K = 6, 2
SLOW_S = 25  # a `slow` fault holds the request past the client timeout below
# The client timeout must stay above the CPU servers' real latency, which reaches tens of
# seconds on a loaded 2-core machine; many fast retries (12: at 30% faults a request fails
# only after 13 in a row, 0.3^13 ~ 2e-7, so none of a run's few hundred requests does).
FAST_RETRY = [f"{r}.{k}" for r in ("draft", "target")
              for k in ("timeout_s=20", "retries=12", "backoff_s=0.05", "max_concurrency=8")]
# the calibration is a single turn-0 pass: cheap; 32-token chunks make ~4x the requests
# of the testbed's 128, so that every fault kind is drawn at 30%
GATE = ["policy.grouping=marginal", "chunking.max_tokens_per_chunk=32", "chunking.max_turns=60"]


_run = run_with_roles


@pytest.fixture(scope="module")
def calibration(testbed, tmp_path_factory):
    """Made without the proxy: faults must not change what a run computes."""
    tmp = tmp_path_factory.mktemp("faults-cal")
    cfg = testbed.config(tmp, sets=["samples_per_question=2", "calibration.limit=20", *GATE])
    cal = _run(cfg, lambda roles: calibrate_async(cfg, roles, progress=False))
    cal.save(cfg.calibration_path)
    return cfg.calibration_path


def _proxied_config(testbed, tmp_path, proxies, sets=(), limit=LIMIT):
    d, t = proxies
    return testbed.config(tmp_path, sets=[f"draft.urls=[{d.url}]", f"target.urls=[{t.url}]",
                                          f"samples_per_question={K}", *FAST_RETRY, *GATE, *sets], limit=limit)


def _records(out_dir):
    files = sorted((out_dir / "samples").iterdir())
    recs = {p.name: json.loads(p.read_text()) for p in files}  # each one valid JSON
    assert all(p.suffix == ".json" and not p.name.startswith(".") for p in files), "a temporary file was left"
    return recs


def _expected_names():
    return {f"q{q:05d}-r{r:03d}.json" for q in range(LIMIT) for r in range(K)}


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_run_completes_under_faults(testbed, calibration, tmp_path, rate):
    with FaultProxy(testbed.urls["draft"], rate, seed=1, slow_s=SLOW_S) as pd, \
            FaultProxy(testbed.urls["target"], rate, seed=2, slow_s=SLOW_S) as pt:
        cfg = _proxied_config(testbed, tmp_path, (pd, pt), [f"calibration.path={calibration}"])
        s = _run(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
        injected = {"draft": dict(pd.counts), "target": dict(pt.counts)}
    print(f"rate {rate}: injected {injected}; engine counters {s['engine_counters']}")
    assert pd.injected > 0 and pt.injected > 0, injected
    if rate >= 0.3:
        assert all(pt.counts[k] > 0 for k in KINDS), injected
    recs = _records(tmp_path / "run")
    assert set(recs) == _expected_names()  # every sample exactly once
    assert all(r["key"] + ".json" == name for name, r in recs.items())
    assert s["n_samples_completed"] == LIMIT * K and s["n_failed"] == 0 and s["failures"] == []
    # each injected fault cost one attempt, and with no sample failed, each was retried,
    # unless it hit a pipelined pre-draft that ATTS cancelled in flight (at most one each)
    cancelled = s["tokens"]["draft"]["cancelled_requests"]
    assert s["engine_counters"]["draft"]["retries"] + cancelled >= pd.injected
    assert s["engine_counters"]["target"]["retries"] >= pt.injected
    scored = [st for r in recs.values() for st in r["steps"] if st["role"] == "draft"]
    assert scored and all(math.isfinite(st["ppl"]) and st["ppl"] >= 1.0 and st["decision"] for st in scored)


def test_exhausted_retries_fail_the_sample_with_the_reason(testbed, calibration, tmp_path):
    """retries=0 and damaged score responses: the sample is `failed` with the reason, never
    scored with a number the server did not send; the summary counts failures apart."""
    with FaultProxy(testbed.urls["draft"], 0.0) as pd, \
            FaultProxy(testbed.urls["target"], 0.3, kinds=("no_logprobs", "http500"), seed=3) as pt:
        cfg = _proxied_config(testbed, tmp_path, (pd, pt), [f"calibration.path={calibration}", "target.retries=0"])
        s = _run(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
    recs = _records(tmp_path / "run")
    assert set(recs) == _expected_names()
    failed = [r for r in recs.values() if r["status"] == "failed"]
    assert failed and s["n_failed"] == len(failed)
    assert s["n_samples_completed"] + s["n_failed"] == LIMIT * K
    reasons = " ".join(r["error"] for r in failed)
    assert "gave up after 1 attempts" in reasons
    assert "input_token_logprobs" in reasons or "HTTP 500" in reasons
    assert s["failures"] and all(any(reason == r["error"] for r in failed) for reason, _ in s["failures"])
    for r in recs.values():  # a decision always rests on a ppl the server returned
        for st in r["steps"]:
            if st.get("decision"):
                assert math.isfinite(st["ppl"]) and st["ppl"] >= 1.0
    assert all(r["correct"] is None for r in failed)


def test_server_outage_is_waited_for(testbed, calibration, tmp_path):
    """on_server_down: wait. The target disappears (connection refused) for 8 s mid-run and
    comes back on the same address: the run completes, with no sample failed."""
    with FaultProxy(testbed.urls["draft"], 0.0) as pd, FaultProxy(testbed.urls["target"], 0.0) as pt:
        cfg = _proxied_config(testbed, tmp_path, (pd, pt), [
            f"calibration.path={calibration}", "target.retries=2", "target.on_server_down=wait",
            "target.down_wait_s=60", "draft.max_concurrency=4", "target.max_concurrency=4"], limit=4)
        samples = tmp_path / "run" / "samples"
        outage = {}

        def cut():
            deadline = time.time() + 120
            while time.time() < deadline and len(list(samples.glob("*.json"))) < 2:
                time.sleep(0.1)
            outage["before"] = len(list(samples.glob("*.json")))
            pt.down()
            time.sleep(8)
            outage["during"] = len(list(samples.glob("*.json")))
            pt.up()

        th = threading.Thread(target=cut, daemon=True)
        th.start()
        s = _run(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
        th.join(10)
    assert outage and outage["before"] < 4 * K, outage
    assert s["n_samples_completed"] == 4 * K and s["n_failed"] == 0
    assert len(_records(tmp_path / "run")) == 4 * K


def test_context_overflow_ends_the_sample_as_truncated(testbed, tmp_path):
    """A long system prompt leaves room for one chunk, not two, in the servers' 4096-token
    context; with no context_length in the config, the overflow is SGLang's own refusal."""
    from atts.tasks.datasets import load_from_config
    from atts.tasks.prompts import Prompter

    cfg = testbed.config(tmp_path, limit=3)
    questions = load_from_config(cfg.dataset)

    def longest_prompt(words: int) -> int:
        pr = Prompter(cfg.draft.tokenizer_path, cfg.prompt.template, " ".join(["note"] * words))
        return max(len(pr.prompt_ids(q)) for q in questions)

    words = 50
    while longest_prompt(words + 10) < 4096 - 200:
        words += 10
    cfg = testbed.config(tmp_path, sets=[f"prompt.system={' '.join(['note'] * words)}", "draft.context_length=null",
                                         "target.context_length=null", "chunking.max_turns=30",
                                         "chunking.token_budget=5000", "samples_per_question=1",
                                         "sampling.draft_temperature=0"],  # greedy: no sample may end in its first chunk by chance
                         limit=3, policy="draft_only")
    s = _run(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
    recs = list(_records(tmp_path / "run").values())
    assert len(recs) == 3 and s["n_truncated"] == 3 and s["n_failed"] == 0
    for r in recs:
        assert r["status"] == "truncated" and r["stop_reason"] == "context_overflow"
        assert "context" in r["error"] or "length" in r["error"]
        assert r["steps"], "overflowed only after some turns"
