"""An iteration-level model of one SGLang server, event-driven on the virtual clock.

What it models (and how SGLang does it):
- continuous batching: requests join and leave the running batch between iterations;
- prefill batches: waiting requests are admitted first-come first-served into one
  prefill iteration while their uncached prompt tokens fit the token budget (the first
  request is always taken); a prefill produces each generation's first token;
- decode steps: every running generation advances one token per step; a step costs
  `Cost.decode_step` (weights + KV read + FLOPs + TP all-reduce);
- KV memory: admission needs the uncached prompt plus ``new_token_ratio`` x max new
  tokens for it and for every running request; when memory runs out during decoding,
  the newest request is retracted (its KV freed) and re-prefilled later;
- a radix cache: prompts are inserted after their prefill, whole sequences when they
  finish; a new request reuses its longest cached prefix (at the granularity of
  ``BLOCK`` tokens); unlocked least-recently-used leaves are evicted under pressure;
- aborts: a cancelled request leaves the batch at the next iteration boundary.

Event-driven: a run of decode steps with the same batch is one event (its duration is
an arithmetic series, since each step reads one more KV token per sequence); arrivals,
aborts and finishes cut it at the step boundary where SGLang would see them. Progress of
running requests is lazy (a global step counter), so an event costs O(log n).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from atts.sim.hardware import Cost

EVICT_STEPS = 8  # decode steps of KV evicted for at once when memory is full (fewer events, same order)
BLOCK = 32  # radix-cache granularity in tokens (SGLang's is 1; the error is < BLOCK tokens per request)
_P = np.uint64(0x9E3779B97F4A7C15)
_POW = np.ones(1, dtype=np.uint64)


def block_hashes(ids) -> list[int]:
    """Hash of every prefix that ends on a block boundary: H_k = sum_{j < k BLOCK}
    ids[j] * P^j (mod 2^64), so equal prefixes have equal hashes and a prefix's hash
    does not depend on what follows it."""
    global _POW
    n = len(ids) // BLOCK * BLOCK
    if n == 0:
        return []
    if len(_POW) < n:
        m = max(n, 2 * len(_POW))
        with np.errstate(over="ignore"):
            _POW = np.cumprod(np.concatenate([[np.uint64(1)], np.full(m - 1, _P, dtype=np.uint64)]), dtype=np.uint64)
    a = np.asarray(ids[:n], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return np.cumsum(a * _POW[:n], dtype=np.uint64)[BLOCK - 1::BLOCK].tolist()


@dataclass
class _Node:
    parent: int | None
    children: int = 0
    lock: int = 0
    last: float = 0.0


class RadixCache:
    """Prefix-closed set of cached blocks (a block is cached only with all its
    ancestors); LRU eviction of unlocked leaves."""

    def __init__(self):
        self.nodes: dict[int, _Node] = {}
        self._heap: list[tuple[float, int]] = []

    @property
    def tokens(self) -> int:
        return len(self.nodes) * BLOCK

    def match(self, hs: list[int]) -> int:
        """Blocks of ``hs`` cached (binary search: the set is prefix-closed)."""
        lo, hi = 0, len(hs)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if hs[mid - 1] in self.nodes:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def touch(self, hs: list[int], m: int, now: float) -> None:
        if m:
            node = self.nodes[hs[m - 1]]
            node.last = now
            if node.children == 0:
                heapq.heappush(self._heap, (now, hs[m - 1]))

    def insert(self, hs: list[int], now: float) -> int:
        """Add the blocks of ``hs`` not cached yet; returns how many were added."""
        m = self.match(hs)
        parent = hs[m - 1] if m else None
        for h in hs[m:]:
            if parent is not None:
                self.nodes[parent].children += 1
            self.nodes[h] = _Node(parent, last=now)
            parent = h
        if m < len(hs):
            heapq.heappush(self._heap, (now, hs[-1]))
        self.touch(hs, len(hs), now)
        return len(hs) - m

    def lock(self, h: int | None, d: int) -> None:
        if h is None or h not in self.nodes:
            return
        node = self.nodes[h]
        node.lock += d
        if node.lock == 0 and node.children == 0:
            heapq.heappush(self._heap, (node.last, h))

    def evict(self, tokens: int) -> int:
        """Evict unlocked LRU leaves until ``tokens`` are freed or none is left."""
        freed = 0
        while freed < tokens and self._heap:
            last, h = heapq.heappop(self._heap)
            node = self.nodes.get(h)
            if node is None or node.children or node.lock or node.last != last:
                continue  # stale entry (re-pushed when it becomes an evictable leaf again)
            del self.nodes[h]
            freed += BLOCK
            if node.parent is not None:
                p = self.nodes[node.parent]
                p.children -= 1
                if p.children == 0 and p.lock == 0:
                    heapq.heappush(self._heap, (p.last, node.parent))
        return freed


_ids = itertools.count()


@dataclass(eq=False)
class Request:
    kind: str  # generate | score
    prompt_len: int
    n_out: int  # tokens this request generates (0 for a score; a generation produces >= 1 step)
    max_new: int
    hs_prompt: list[int]
    hs_full: list[int]  # block hashes of prompt + output (what is cached when it finishes)
    id: int = field(default_factory=lambda: next(_ids))
    submitted: float = 0.0
    admitted: float | None = None
    finished: float | None = None
    cached: int = 0
    generated: int = 0  # valid while not running (running: gen0 + (G - g0))
    aborted: bool = False
    state: str = "waiting"  # waiting | running | done
    future: asyncio.Future | None = None
    _g0: int = 0
    _gen0: int = 0
    _lock: int | None = None


class Server:
    """One server replica (see module docs). ``run(req)`` waits until ``req`` is done."""

    def __init__(self, name: str, cost: Cost, loop: asyncio.AbstractEventLoop | None = None, timeline: bool = True):
        self.name, self.cost = name, cost
        self.loop = loop or asyncio.get_event_loop()
        self.cache = RadixCache()
        self.waiting: list[Request] = []  # FIFO (a list: retracted requests go to the front)
        self.running: dict[int, Request] = {}
        self._finish_heap: list[tuple[int, int, Request]] = []
        self.G = 0  # decode steps done so far
        self._s_gen = 0  # sum over running of (gen0 - g0): private tokens = _s_gen + n G
        self._s_ctx = 0  # sum over running of (ctx0 - g0)
        self._s_max = 0  # sum over running of max_new
        self._handle: asyncio.TimerHandle | None = None
        self._macro: tuple | None = None  # (start, K, n, C) of the decode run in progress
        self._busy_until = 0.0
        # statistics
        self.busy = 0.0
        self.decode_steps = 0
        self.decode_seq_steps = 0
        self.prefill_iterations = 0
        self.prefill_tokens = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.retractions = 0
        self.kv_time = 0.0  # integral of used KV tokens over busy time
        self.timeline: list[tuple] | None = [] if timeline else None  # (start, dt, kind, batch, kv_used)

    # -- memory
    @property
    def n_running(self) -> int:
        return len(self.running)

    def private_tokens(self) -> int:
        return self._s_gen + self.n_running * self.G

    def used_tokens(self) -> int:
        return self.cache.tokens + self.private_tokens()

    def _reserved(self) -> float:
        return self.cost.new_token_ratio * max(0, self._s_max - self.private_tokens())

    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    # -- the request interface
    async def run(self, req: Request) -> Request:
        req.submitted = self.loop.time()
        req.future = self.loop.create_future()
        self.waiting.append(req)
        self._poke()
        try:
            await asyncio.shield(req.future)
        except asyncio.CancelledError:
            self.abort(req)
            raise
        return req

    def abort(self, req: Request) -> None:
        if req.state == "waiting":
            if req in self.waiting:
                self.waiting.remove(req)
            req.state = "done"
        elif req.state == "running":
            req.aborted = True
            if self._macro is not None:
                self._cut()
        if req.future is not None and not req.future.done():
            req.future.cancel()

    # -- scheduling
    def _poke(self) -> None:
        """A request arrived: start an iteration now if idle, else end the decode run in
        progress at its next step boundary (the scheduler admits between steps)."""
        if self._handle is None:
            self._handle = self.loop.call_soon(self._iterate)
        elif self._macro is not None:
            self._cut()

    def _steps_time(self, K: int, n: int, C: float) -> float:
        """Duration of K decode steps of n sequences whose contexts sum to C at the first."""
        c = self.cost
        return K * c.decode_step(n, C) + c.ctx * n * K * (K - 1) / 2  # sum_k ctx * (C + n k)

    def _cut(self) -> None:
        """End the decode run in progress at the step boundary after now."""
        start, K, n, C = self._macro
        now = self.loop.time()
        # smallest k with start + time(k steps) >= now
        lo, hi = 1, K
        while lo < hi:
            mid = (lo + hi) // 2
            if start + self._steps_time(mid, n, C) >= now - 1e-12:
                hi = mid
            else:
                lo = mid + 1
        if lo < K:
            self._macro = (start, lo, n, C)
            self._handle.cancel()
            self._handle = self.loop.call_at(start + self._steps_time(lo, n, C), self._end_decode)

    def _record(self, start: float, dt: float, kind: str, batch: int) -> None:
        self.busy += dt
        self.kv_time += self.used_tokens() * dt
        if self.timeline is not None:
            self.timeline.append((start, dt, kind, batch, self.used_tokens()))

    def _iterate(self) -> None:
        self._handle = None
        self._macro = None
        batch = self._admit()
        if batch:
            self._prefill(batch)
        elif self.running:
            self._decode()

    def _admit(self) -> list[Request]:
        c, now = self.cost, self.loop.time()
        batch, tokens = [], 0
        while self.waiting:
            req = self.waiting[0]
            m = self.cache.match(req.hs_prompt)
            cached = min(m * BLOCK, req.prompt_len - 1) if m else 0
            new = req.prompt_len - cached + req.generated  # a retracted request recomputes what it generated
            if batch and tokens + new > c.prefill_budget_tokens:
                break
            hold = req.hs_prompt[m - 1] if m else None
            self.cache.lock(hold, +1)  # its cached prefix must survive the eviction below
            need = new + c.new_token_ratio * max(0, req.max_new - req.generated)
            avail = c.kv_capacity_tokens - self.used_tokens() - self._reserved()
            if avail < need:
                avail += self.cache.evict(int(math.ceil(need - avail)))
            if avail < need and (batch or self.running):
                self.cache.lock(hold, -1)
                break  # wait for memory (a lone request is admitted anyway: SGLang would run it)
            self.waiting.pop(0)
            self.cache.touch(req.hs_prompt, m, now)
            req.cached = cached
            tokens += new
            batch.append(req)
            # its prompt is cached (locked) once prefilled: counted from now
            self.cache.insert(req.hs_prompt, now)
            req._lock = req.hs_prompt[-1] if req.hs_prompt else None
            self.cache.lock(req._lock, +1)
            self.cache.lock(hold, -1)
        return batch

    def _prefill(self, batch: list[Request]) -> None:
        now = self.loop.time()
        new = sum(r.prompt_len - r.cached + r.generated for r in batch)
        pairs = sum((r.prompt_len - r.cached + r.generated) * (r.cached + (r.prompt_len - r.cached + r.generated) / 2)
                    for r in batch)
        dt = self.cost.prefill(new, pairs)
        self.prefill_iterations += 1
        self.prefill_tokens += new
        for r in batch:
            r.admitted = now
            self.prompt_tokens += r.prompt_len
            self.cached_tokens += r.cached
        self._record(now, dt, "prefill", len(batch))
        self._handle = self.loop.call_at(now + dt, self._end_prefill, batch)

    def _end_prefill(self, batch: list[Request]) -> None:
        for r in batch:
            if r.aborted or (r.future is not None and r.future.cancelled()):
                self._release(r, finished=False)
                continue
            if r.kind == "score" or r.n_out <= 1 + r.generated:
                r.generated = max(r.generated, min(r.n_out, 1))
                self._release(r, finished=True)
                continue
            self._join(r, r.generated + 1)
        self._iterate()

    def _join(self, r: Request, gen: int) -> None:
        r.state, r._g0, r._gen0 = "running", self.G, gen
        self.running[r.id] = r
        self._s_gen += gen - self.G
        self._s_ctx += r.prompt_len + gen - self.G
        self._s_max += r.max_new
        heapq.heappush(self._finish_heap, (self.G + r.n_out - gen, r.id, r))

    def _leave(self, r: Request) -> None:
        del self.running[r.id]
        r.generated = r._gen0 + self.G - r._g0
        self._s_gen -= r._gen0 - r._g0
        self._s_ctx -= r.prompt_len + r._gen0 - r._g0
        self._s_max -= r.max_new

    def _release(self, r: Request, finished: bool) -> None:
        now = self.loop.time()
        self.cache.lock(r._lock, -1)
        r._lock = None
        if finished:
            self.cache.insert(r.hs_full, now)
        r.state, r.finished = "done", now
        if r.future is not None and not r.future.done():
            r.future.set_result(r)

    def _decode(self) -> None:
        now, n = self.loop.time(), self.n_running
        while self._finish_heap and self._finish_heap[0][2].id not in self.running:
            heapq.heappop(self._finish_heap)
        K = max(1, self._finish_heap[0][0] - self.G)
        # memory for the next steps: evict cache only when a step would not fit (then for
        # EVICT_STEPS steps at once), as SGLang does per step; else retract the newest
        free = self.cost.kv_capacity_tokens - self.used_tokens()
        if free < n:
            free += self.cache.evict(n * EVICT_STEPS - free)
        if free < n:
            newest = max(self.running.values(), key=lambda r: r._g0)
            self._leave(newest)
            newest.state = "waiting"
            self.cache.lock(newest._lock, -1)
            newest._lock = None
            self.retractions += 1
            self.waiting.insert(0, newest)
            self._handle = self.loop.call_soon(self._iterate)
            return
        K = min(K, free // n)
        C = self._s_ctx + n * self.G
        self._macro = (now, K, n, C)
        self._handle = self.loop.call_at(now + self._steps_time(K, n, C), self._end_decode)

    def _end_decode(self) -> None:
        start, K, n, C = self._macro
        dt = self._steps_time(K, n, C)
        self.decode_steps += K
        self.decode_seq_steps += K * n
        self.busy += dt
        self.kv_time += (self.used_tokens() + n * K / 2) * dt
        if self.timeline is not None:
            self.timeline.append((start, dt, "decode", n, self.used_tokens() + n * K))
        self.G += K
        while self._finish_heap and self._finish_heap[0][0] <= self.G:
            _, rid, r = heapq.heappop(self._finish_heap)
            if rid in self.running:
                self._leave(r)
                self._release(r, finished=True)
        for r in [r for r in self.running.values() if r.aborted or (r.future is not None and r.future.cancelled())]:
            self._leave(r)
            self._release(r, finished=False)
        self._iterate()

    # -- figures
    def stats(self, wall: float) -> dict:
        return {"busy_seconds": self.busy, "utilisation": self.busy / wall if wall else None,
                "decode_steps": self.decode_steps,
                "mean_decode_batch": self.decode_seq_steps / self.decode_steps if self.decode_steps else None,
                "prefill_iterations": self.prefill_iterations, "prefill_tokens": self.prefill_tokens,
                "prompt_tokens": self.prompt_tokens, "cached_prompt_tokens": self.cached_tokens,
                "cache_hit_rate": self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None,
                "kv_capacity_tokens": self.cost.kv_capacity_tokens,
                "mean_kv_occupancy_busy": self.kv_time / self.busy / self.cost.kv_capacity_tokens if self.busy else None,
                "retractions": self.retractions}
