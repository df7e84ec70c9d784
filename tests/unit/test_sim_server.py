"""The iteration-level server model: costs add up as the cost model says, batching
shares steps, the radix cache serves repeated prefixes, KV memory is never exceeded,
aborts free their slot."""

import asyncio
import dataclasses

import pytest

from atts.sim import clock
from atts.sim.hardware import Cost, load_hardware
from atts.sim.server import BLOCK, RadixCache, Request, Server, block_hashes

COST = Cost(step=0.010, seq=0.001, ctx=1e-6, tok=1e-4, attn=0.0, request_overhead=0.0, kv_capacity_tokens=100_000,
            prefill_budget_tokens=8192, new_token_ratio=0.7)


def _req(prompt, n_out, kind="generate", max_new=None):
    out = list(range(10**6, 10**6 + n_out))
    return Request(kind, len(prompt), n_out, max_new or max(1, n_out), block_hashes(prompt),
                   block_hashes(prompt + out))


def _serve(cost, jobs):
    """jobs: [(delay, Request)]; returns {id: (submitted, finished)} and the server."""
    box = {}

    async def main():
        srv = Server("s", cost, asyncio.get_running_loop())
        box["srv"] = srv

        async def one(delay, r):
            await asyncio.sleep(delay)
            await srv.run(r)
        await asyncio.gather(*(one(d, r) for d, r in jobs))

    clock.run(main())
    return box["srv"]


def test_single_request_costs_prefill_plus_decode_steps():
    p = list(range(1, 101))
    r = _req(p, 50)
    srv = _serve(COST, [(0, r)])
    prefill = COST.step + COST.tok * 100
    # first token from the prefill, then 49 steps; the k-th reads 100 + 1 + k context tokens
    decode = sum(COST.decode_step(1, 101 + k) for k in range(49))
    assert r.finished == pytest.approx(prefill + decode, rel=1e-9)
    assert srv.decode_steps == 49 and srv.busy == pytest.approx(r.finished)


def test_batching_shares_steps():
    alone = _req(list(range(1, 101)), 200)
    t1 = _serve(COST, [(0, alone)]) and alone.finished
    a, b = _req(list(range(1, 101)), 200), _req(list(range(500, 600)), 200)
    srv = _serve(COST, [(0, a), (0, b)])
    assert max(a.finished, b.finished) < 1.3 * t1  # not 2x: one step serves both
    assert srv.stats(1.0)["mean_decode_batch"] == pytest.approx(2.0, abs=0.05)


def test_arrival_joins_at_the_next_step_boundary():
    a, b = _req(list(range(1, 101)), 300), _req(list(range(500, 600)), 10)
    srv = _serve(COST, [(0, a), (0.5, b)])
    assert 0.5 < b.admitted < 0.5 + COST.decode_step(1, 500) + 1e-9
    assert a.finished > b.finished and srv.decode_steps < 300 + 10


def test_radix_cache_serves_a_repeated_prefix():
    p = list(range(1, 1001))
    first, again = _req(p, 5), _req(p + [7, 7, 7], 5)
    other = _req(list(range(5000, 6000)), 5)
    _serve(COST, [(0, first), (1.0, again), (2.0, other)])
    assert first.cached == 0 and other.cached == 0
    assert again.cached >= 1000 - BLOCK


def test_block_hashes_are_prefix_hashes():
    a = list(range(1, 200))
    assert block_hashes(a + [5, 6, 7])[: len(a) // BLOCK] == block_hashes(a)
    assert block_hashes([9] + a[1:])[0] != block_hashes(a)[0]


def test_eviction_keeps_the_set_prefix_closed_and_spares_locked_nodes():
    c = RadixCache()
    hs = block_hashes(list(range(1, 10 * BLOCK + 1)))
    c.insert(hs, 0.0)
    c.lock(hs[4], +1)
    freed = c.evict(10**9)
    assert freed == 5 * BLOCK and c.match(hs) == 5  # the locked node and its ancestors stay


def test_kv_memory_is_never_exceeded_and_everything_finishes():
    small = dataclasses.replace(COST, kv_capacity_tokens=6000)
    jobs = [(0.01 * i, _req(list(range(10_000 * i + 1, 10_000 * i + 800)), 400)) for i in range(20)]
    srv = _serve(small, jobs)
    assert all(r.state == "done" and r.finished for _, r in jobs)
    assert max(e[4] for e in srv.timeline) <= small.kv_capacity_tokens
    assert srv.stats(1.0)["mean_decode_batch"] < 8  # memory, not the queue, bounds the batch


def test_cancelled_request_leaves_the_batch():
    box = {}

    async def main():
        srv = Server("s", COST, asyncio.get_running_loop())
        long_, short = _req(list(range(1, 101)), 10_000), _req(list(range(500, 600)), 20)
        t = asyncio.ensure_future(srv.run(long_))
        await asyncio.sleep(1.0)
        t.cancel()
        await srv.run(short)
        box.update(srv=srv, long=long_, short=short)

    clock.run(main())
    assert box["long"].state == "done" and box["long"].id not in box["srv"].running
    assert box["short"].finished < 3.0  # it did not wait for the 10,000-token request


def test_h100_profile_reproduces_the_reference_batch1_costs():
    """REAL_WORKLOAD.md: 5.8 ms/token (8B, 1 GPU), 12.7 ms/token (32B, TP2) at batch 1."""
    hw = load_hardware("configs/hardware/h100_r1llama8b_qwq32b.yaml")
    assert hw.cost("draft").decode_step(1, 2048) * 1e3 == pytest.approx(5.8, abs=0.1)
    assert hw.cost("target").decode_step(1, 2048) * 1e3 == pytest.approx(12.7, abs=0.1)
    slow, fast = hw.cost("target", -1), hw.cost("target", +1)
    assert slow.decode_step(1, 2048) > hw.cost("target").decode_step(1, 2048) > fast.decode_step(1, 2048)
