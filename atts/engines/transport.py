"""The HTTP transport both engines share: pool, bounded concurrency, retries with
backoff, response checks, health probing, balancing over several URLs, auth headers.

One `Transport` per engine (one role). An engine says only where requests go
(``api_path``), which key a valid answer's body has (``body_key``) and, per request, a
``check`` that raises `MalformedResponse` on a body it cannot use; everything about
getting a usable answer from the servers is here, written once:

- a POST waits for one of ``max_concurrency`` slots, then tries up to ``retries + 1``
  times with exponential backoff and jitter on 5xx/429, transport errors, timeouts,
  invalid JSON, a body without ``body_key``, and a body ``check`` rejects;
- 401/403 is the server's API key check: one clear error, never retried;
- a 400 that reads like a context overflow is `ContextOverflow`; other 4xx `EngineError`;
- when the retries are exhausted on server-level errors and no URL answers ``/health``,
  `ServerDown` (or, ``on_server_down: wait``, it polls ``/health`` up to ``down_wait_s``
  and starts a fresh round of attempts).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Callable

import httpx

from atts.engines.balance import Balancer
from atts.engines.base import ContextOverflow, EngineSettings, MalformedResponse, RequestStats, ServerDown
from atts.errors import EngineError

AUTH_STATUS = {401, 403}
RETRY_STATUS = {500, 502, 503, 504, 429}
POOL_SHARD = 16  # connections per httpx client of the pool (see Transport.open)


def auth_headers(role: str, api_key_env: str | None) -> dict[str, str]:
    """``{"Authorization": "Bearer <key>"}`` with the key read from the environment
    variable ``api_key_env`` ({} without one); EngineError when it is unset or empty."""
    if not api_key_env:
        return {}
    key = os.environ.get(api_key_env)
    if not key:
        raise EngineError(role, f"api_key_env: the environment variable {api_key_env} is not set "
                                "(it must hold the server's API key)")
    return {"Authorization": f"Bearer {key}"}


def check_auth(role: str, url: str, r: httpx.Response) -> None:
    """A 401/403 is the server's API key check: an EngineError saying what to set
    (not retried; the response body is not quoted, it may echo the header)."""
    if r.status_code in AUTH_STATUS:
        raise EngineError(role, f"{url} refused the request (HTTP {r.status_code}): the server wants an API key; "
                                f"set {role}.api_key_env to the name of the environment variable that holds it")


def looks_like_overflow(text: str) -> bool:
    t = text.lower()
    return "context length" in t or "too long" in t or "maximum context" in t or "exceeds" in t


class Transport:
    """``post(payload, stats, check)`` → the first usable JSON body; ``get(path)`` for
    one-off reads (model info). ``counters`` (requests, retries, failures, server_down)
    is the engine's ``counters``."""

    def __init__(self, role: str, settings: EngineSettings, api_path: str, body_key: str):
        if not settings.urls:
            raise ValueError(f"{role}: no server URL")
        self.role = role
        self.settings = settings
        self.api_path = api_path  # where post sends requests
        self.body_key = body_key  # the key every valid answer's body has
        self.lb = Balancer(settings.urls)
        self.counters: dict = {"requests": 0, "retries": 0, "failures": 0}
        self.client: httpx.AsyncClient | None = None

    # -- lifecycle
    def open(self) -> None:
        """The connection pool, sized to the concurrency limit, built once: shards of
        ``POOL_SHARD`` connections each, because httpcore scans its whole pool (with a
        term quadratic in idle connections) on every request and response; with one
        pool of 1,000 connections that scan was most of the client's CPU time
        (docs/benchmarks.md). A request takes a free slot of some shard."""
        if self.client is None:
            s = self.settings
            n = s.max_concurrency + 4
            m = min(POOL_SHARD, n)
            limits = httpx.Limits(max_connections=m, max_keepalive_connections=m)
            timeout = httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s)
            ssl = httpx.create_ssl_context(trust_env=False)  # loaded once, shared by the shards
            headers = auth_headers(self.role, s.api_key_env)
            self._shards = [httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False, verify=ssl,
                                              headers=headers)
                            for _ in range(-(-n // m))]  # ceil(n / m) shards
            self._slots: asyncio.Queue = asyncio.Queue()
            for _ in range(m):
                for c in self._shards:
                    self._slots.put_nowait(c)
            self.client = self._shards[0]  # for one-off requests (model_info)
            self._sem = asyncio.Semaphore(s.max_concurrency)

    async def aclose(self) -> None:
        if self.client is not None:
            for c in self._shards:
                await c.aclose()
            self.client = None

    async def get(self, path: str) -> tuple[str, object]:
        """(url, parsed JSON) of one GET on some URL; EngineError if it fails."""
        self.open()
        url = self.lb.pick()
        try:
            r = await self.client.get(url + path, timeout=10.0)
            check_auth(self.role, url, r)
            r.raise_for_status()
            return url, r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise EngineError(self.role, f"{url} unreachable: {type(e).__name__}: {e}") from e

    # -- POST with retries
    async def post(self, payload: dict, stats: RequestStats, check: Callable[[dict], object] | None = None) -> dict:
        """The first body that has ``body_key`` and passes ``check`` (see the module
        docstring for what is retried); ``stats`` gets the queue and service times."""
        self.open()
        t_queue = time.perf_counter()
        async with self._sem:
            t0 = time.perf_counter()
            stats.queue_s = t0 - t_queue
            try:
                return await self._post_with_retries(payload, stats, check)
            finally:
                stats.service_s = time.perf_counter() - t0

    async def _post_with_retries(self, payload: dict, stats: RequestStats, check) -> dict:
        s = self.settings
        while True:
            body, last, server_fault = await self._attempts(payload, stats, check)
            if body is not None:
                return body
            if server_fault and not await self.healthy():
                if s.on_server_down != "wait" or not await self._wait_healthy():
                    self.counters["server_down"] = self.counters.get("server_down", 0) + 1
                    raise ServerDown(self.role, f"server {', '.join(s.urls)} is down ({last}, and no answer to /health"
                                     + (f" within {s.down_wait_s:.0f}s" if s.on_server_down == "wait" else "")
                                     + "); finished samples are saved: restart it and rerun the same command to resume")
                continue  # the server is back: a fresh round of attempts
            self.counters["failures"] += 1
            raise EngineError(self.role, f"gave up after {s.retries + 1} attempts: {last}")

    async def _attempts(self, payload: dict, stats: RequestStats, check) -> tuple[dict | None, str, bool]:
        """One round of retries: (body, "", False) on success, else (None, the last error,
        whether it was server-level: transport error, timeout or 5xx)."""
        s = self.settings
        last = "no attempt"
        server_fault = False
        for attempt in range(s.retries + 1):
            url = self.lb.pick()
            stats.attempts += 1
            stats.url = url
            self.counters["requests"] += 1
            try:
                r = await self._send(url, payload)
                server_fault = r.status_code in RETRY_STATUS
                if r.status_code in RETRY_STATUS:
                    last = f"HTTP {r.status_code} from {url}"
                elif r.status_code in AUTH_STATUS:
                    check_auth(self.role, url, r)
                elif r.status_code == 400 and looks_like_overflow(r.text):
                    raise ContextOverflow(self.role, r.text[:300])
                elif r.status_code >= 400:
                    raise EngineError(self.role, f"HTTP {r.status_code} from {url}: {r.text[:300]}")
                else:
                    body, last = self._usable(r, url, check)
                    if body is not None:
                        return body, "", False
            except (httpx.TransportError, httpx.DecodingError) as e:
                last = f"{type(e).__name__} from {url}: {e}"
                server_fault = isinstance(e, httpx.TransportError)
            if attempt < s.retries:
                self.counters["retries"] += 1
                # backoff_s · 2^attempt, capped at backoff_max_s, times a jitter in [0.5, 1)
                delay = min(s.backoff_max_s, s.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
        return None, last, server_fault

    def _usable(self, r: httpx.Response, url: str, check) -> tuple[dict | None, str]:
        """(body, "") for a 200 body that is a JSON object with ``body_key`` and passes
        ``check``; else (None, why), and the attempt is retried."""
        try:
            body = r.json()
        except ValueError:
            return None, f"invalid JSON from {url}"
        if not isinstance(body, dict):
            return None, f"unexpected response type from {url}"
        if self.body_key not in body:
            return None, f"response without {self.body_key} from {url}"
        try:
            if check is not None:
                check(body)
        except MalformedResponse as e:
            return None, f"{e.reason} from {url}"
        return body, ""

    # -- health
    async def healthy(self, probes: int = 3, gap_s: float = 1.0) -> bool:
        """Whether any of the role's servers answers /health with 200 within ``probes``
        tries ``gap_s`` apart (a loaded server may miss one probe)."""
        self.open()
        for i in range(probes):
            for url in self.settings.urls:
                try:
                    if (await self.client.get(url + "/health", timeout=10.0)).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
            if i + 1 < probes:
                await asyncio.sleep(gap_s)
        return False

    async def _wait_healthy(self) -> bool:
        """``on_server_down: wait``: poll /health every 2 s for up to ``down_wait_s``."""
        deadline = time.monotonic() + self.settings.down_wait_s
        while time.monotonic() < deadline:
            if await self.healthy(probes=1):
                return True
            await asyncio.sleep(2.0)
        return False

    async def _send(self, url: str, payload: dict) -> httpx.Response:
        """One attempt on the pooled client, counted in flight on ``url`` for the
        balancer; a transport error or retryable status puts ``url`` on cool-down."""
        client = await self._slots.get()
        with self.lb.track(url):
            try:
                r = await client.post(url + self.api_path, json=payload)
            except httpx.TransportError:
                self.lb.failed(url)
                raise
            finally:
                self._slots.put_nowait(client)
        if r.status_code in RETRY_STATUS:
            self.lb.failed(url)
        return r


class TransportEngine:
    """The lifecycle shared by the engines that send through one `Transport`
    (``self._transport``): ``async with engine:`` opens its connections, ``aclose``
    closes them."""

    _transport: Transport

    async def __aenter__(self):
        self._transport.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()
