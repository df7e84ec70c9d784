"""Spreading one role's requests over its endpoints (several replicas of one model).

`Balancer` picks, for each attempt, the endpoint with the fewest requests in flight
(join-the-shortest-queue), ties broken round-robin so that an idle pool is still used
evenly. An endpoint that just failed (transport error, 5xx, 429) sits out for a short
cool-down, so that a retry goes to another replica; when every endpoint is cooling
down they are all eligible again (a single server is always tried).

With one endpoint this is plain pass-through. To balance over many replicas or machines
with cache-aware routing, point the role at an `sglang-router` instead (one URL):
docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import itertools
import time


class Balancer:
    def __init__(self, urls: tuple[str, ...] | list[str], cooldown_s: float = 2.0):
        if not urls:
            raise ValueError("no server URL")
        self.urls = tuple(urls)
        self.cooldown_s = cooldown_s
        self.in_flight = {u: 0 for u in self.urls}
        self.sent = {u: 0 for u in self.urls}  # attempts sent to each endpoint
        self._down_until = {u: 0.0 for u in self.urls}
        self._turn = itertools.count()

    def pick(self) -> str:
        """The endpoint for the next attempt: fewest in flight among those not cooling
        down, ties broken by a rotating start."""
        n = len(self.urls)
        if n == 1:
            return self.urls[0]
        start = next(self._turn) % n
        order = [self.urls[(start + i) % n] for i in range(n)]
        now = time.monotonic()
        up = [u for u in order if self._down_until[u] <= now] or order
        return min(up, key=lambda u: self.in_flight[u])

    @contextlib.contextmanager
    def track(self, url: str):
        """Counts the block as one request in flight on ``url``."""
        self.in_flight[url] += 1
        self.sent[url] += 1
        try:
            yield
        finally:
            self.in_flight[url] -= 1

    def failed(self, url: str) -> None:
        self._down_until[url] = time.monotonic() + self.cooldown_s
