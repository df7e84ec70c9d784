"""Scale-out against real servers: two CPU replicas of the target, used (1) behind
`sglang-router` (the target role has one URL, the router's) and (2) directly (the target
role has both URLs; atts balances). Each run must complete, and both replicas must have
served requests, as counted by their own Prometheus metrics (`--enable-metrics`,
`sglang:num_requests_total`). The draft is the session testbed's."""

import json
import subprocess
import sys
import time

import httpx
import pytest

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.serving.sglang import ServerGroup, ServerSpec, _pid_alive, free_port, log_tail, stop_pid_tree
from atts.runtime.session import run_with_roles
from conftest import MODELS

pytestmark = pytest.mark.server

N_QUESTIONS = 10


_run = run_with_roles


def served(url: str) -> int:
    """Requests a replica has processed: the sum of its `sglang:num_requests_total`."""
    text = httpx.get(url + "/metrics", timeout=10, trust_env=False).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("sglang:num_requests_total")))


def start_router(worker_urls: list[str], log_path, timeout: float = 120.0):
    """`python -m sglang_router.launch_router` in its own session on a free port; ready
    once it forwards `/get_model_info` to a registered worker."""
    port = free_port()
    argv = [sys.executable, "-m", "sglang_router.launch_router", "--host", "127.0.0.1", "--port", str(port),
            "--worker-urls", *worker_urls, "--policy", "round_robin", "--log-level", "warn"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sglang-router exited during start-up:\n{log_tail(log_path)}")
        try:
            if httpx.get(url + "/get_model_info", timeout=5, trust_env=False).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_pid_tree(proc.pid)
            raise RuntimeError(f"sglang-router not ready after {timeout:.0f}s:\n{log_tail(log_path)}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def replicas(testbed, tmp_path_factory):
    """Two target replicas and a router in front of them; every process tree is killed
    at the end."""
    log_dir = tmp_path_factory.mktemp("replica-logs")
    # mem_fraction_static 0.3: SGLang's CPU start-up check wants a share of the memory free
    # at start-up; --max-total-tokens (16384) still bounds the KV cache itself
    specs = [ServerSpec(f"target-{i}", str(MODELS / "chain-target"), context_length=4096, cpu_threads=1,
                        mem_fraction_static=0.3, extra_args=("--enable-metrics",)) for i in (1, 2)]
    group = ServerGroup(specs, log_dir, timeout=300)
    urls = group.__enter__()
    proc = None
    try:
        proc, router = start_router([urls["target-1"], urls["target-2"]], log_dir / "router.log")
        yield {"replicas": [urls["target-1"], urls["target-2"]], "router": router, "log_dir": log_dir}
    finally:
        if proc is not None:
            stop_pid_tree(proc.pid)
            proc.wait(timeout=10)
        group.__exit__(None, None, None)
        left = [s.pid for s in group.servers if _pid_alive(s.pid)] + ([proc.pid] if proc and _pid_alive(proc.pid) else [])
        assert not left, f"processes left after teardown: {left}"


@pytest.fixture(scope="module")
def calibration(testbed, replicas, tmp_path_factory):
    """One ATTS calibration (K=1, N_QUESTIONS), its target requests through the router;
    both evaluations below use it."""
    tmp = tmp_path_factory.mktemp("router-calibration")
    cfg = _config(testbed, tmp, [replicas["router"]], "unused")
    cal = _run(cfg, lambda roles: calibrate_async(cfg, roles, progress=False))
    cal.save(cfg.calibration_path)
    return cfg.calibration_path


def _config(testbed, tmp, target_urls: list[str], name: str, calibration=None):
    sets = ["samples_per_question=1", f"calibration.limit={N_QUESTIONS}", "calibration.min_per_turn=5",
            "policy.alpha=0.5", f"target.urls=[{', '.join(target_urls)}]"]
    if calibration:
        sets.append(f"calibration.path={calibration}")
    return testbed.config(tmp, sets=sets, limit=N_QUESTIONS, output_dir=str(tmp / name))


def _atts_run(testbed, tmp, target_urls: list[str], name: str, calibration) -> tuple[dict, dict]:
    """Evaluate ATTS (K=1, N_QUESTIONS) with the target at ``target_urls``; also returns
    the target's requests per URL as atts recorded them."""
    cfg = _config(testbed, tmp, target_urls, name, calibration)
    summary = _run(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
    by_url: dict[str, int] = {}
    for p in (tmp / name / "samples").glob("*.json"):
        for step in json.loads(p.read_text())["steps"]:
            for req in step["requests"]:
                if req["role"] == "target":
                    by_url[req["url"]] = by_url.get(req["url"], 0) + 1
    return summary, by_url


def test_atts_through_sglang_router_spreads_over_both_replicas(testbed, replicas, calibration, tmp_path):
    before = [served(u) for u in replicas["replicas"]]
    summary, by_url = _atts_run(testbed, tmp_path, [replicas["router"]], "router", calibration)
    after = [served(u) for u in replicas["replicas"]]
    delta = [a - b for a, b in zip(after, before)]
    print(f"router: requests per replica {delta}, target requests seen by atts {by_url}")
    assert summary["n_samples_completed"] == N_QUESTIONS and summary["n_failed"] == 0
    assert set(by_url) == {replicas["router"]}  # atts only talked to the router
    assert summary["tokens"]["target"]["scored"] > 0
    # round robin: both replicas served a fair share of the target's requests
    assert min(delta) >= 0.3 * sum(delta) and sum(delta) >= sum(by_url.values())


def test_atts_balances_over_two_target_urls_itself(testbed, replicas, calibration, tmp_path):
    before = [served(u) for u in replicas["replicas"]]
    summary, by_url = _atts_run(testbed, tmp_path, replicas["replicas"], "direct", calibration)
    after = [served(u) for u in replicas["replicas"]]
    delta = [a - b for a, b in zip(after, before)]
    print(f"direct: requests per replica {delta}, target requests by url (atts) {by_url}")
    assert summary["n_samples_completed"] == N_QUESTIONS and summary["n_failed"] == 0
    assert set(by_url) == set(replicas["replicas"])
    n = sum(by_url.values())
    assert min(by_url.values()) >= 0.25 * n  # least-in-flight with round-robin ties: spread
    assert min(delta) > 0 and sum(delta) >= n
