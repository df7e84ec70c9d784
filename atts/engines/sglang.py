"""Async client for SGLang's native API: chunk generation and token-exact chunk scoring.

One `SGLangEngine` per role (draft, target). It holds one pooled HTTP client sized to
its concurrency limit, a semaphore that bounds in-flight requests, retries with
exponential backoff on connection errors, timeouts and 5xx, and validates every
response: a malformed answer is an error, never a silently invented number.

Scoring (the heart of ATTS) uses ``/generate`` with ``input_ids = prefix + chunk``,
``max_new_tokens: 0``, ``return_logprob: true`` and ``logprob_start_len = P - 1`` where
``P = len(prefix)``. SGLang then returns logprobs for positions P-1..end with the first
entry null, so entries 1.. are exactly log p(chunk_i | prefix, chunk_<i), the chunk's
first token included. PPL = exp(-mean logprob).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
from dataclasses import dataclass, field

import httpx

from atts.engines.balance import Balancer
from atts.errors import EngineError


class ContextOverflow(EngineError):
    """The prompt plus the requested tokens exceed the model's context length."""


class MalformedResponse(EngineError):
    """A 200 response whose body is not what the request asked for (no logprobs, too few
    of them, wrong tokens). Transient like a 5xx: the request is retried."""


class ServerDown(EngineError):
    """A request exhausted its retries on transport errors or 5xx, and the role's server
    no longer answers ``/health``: the run stops (or, with ``on_server_down: wait``, it
    waited ``down_wait_s`` for the server to come back, in vain). Not a sample failure."""


@dataclass
class RequestStats:
    """Where the time of one logical request went (retries included)."""

    kind: str  # generate | score
    role: str
    submitted: float  # wall-clock epoch seconds
    queue_s: float = 0.0  # waiting for a concurrency slot
    service_s: float = 0.0  # HTTP round trips, retries and backoff included
    attempts: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    url: str = ""

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish: str  # "stop" (stop string), "eos", "length"
    matched_stop: str | None
    stats: RequestStats
    # top_logprobs requested: per output token, [(logprob, token_id, token_text), ...]
    top_logprobs: list[list[tuple[float, int, str]]] | None = None


@dataclass
class Scoring:
    token_ids: list[int]
    logprobs: list[float]
    stats: RequestStats

    @property
    def mean_nll(self) -> float:
        return -sum(self.logprobs) / len(self.logprobs)

    @property
    def ppl(self) -> float:
        return math.exp(self.mean_nll)


@dataclass
class EngineSettings:
    urls: tuple[str, ...]
    max_concurrency: int = 16
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    retries: int = 4
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    on_server_down: str = "fail"  # fail: stop the run | wait: poll /health up to down_wait_s, then retry
    down_wait_s: float = 600.0
    # the name of the environment variable holding the server's API key (sent as
    # `Authorization: Bearer`); the key itself is read when the client opens and kept
    # only in its headers, never in settings, records or logs
    api_key_env: str | None = None


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


_AUTH_STATUS = {401, 403}
_RETRY_STATUS = {500, 502, 503, 504, 429}
POOL_SHARD = 16  # connections per httpx client of an engine's pool (see SGLangEngine._open)


@dataclass
class SGLangEngine:
    api_path = "/generate"  # where _post sends requests, and the key a valid answer has
    body_key = "meta_info"

    role: str
    settings: EngineSettings
    context_length: int | None = None
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _sem: asyncio.Semaphore | None = field(default=None, init=False, repr=False)
    _lb: Balancer | None = field(default=None, init=False, repr=False)
    counters: dict = field(default_factory=lambda: {"requests": 0, "retries": 0, "failures": 0}, init=False)

    def __post_init__(self) -> None:
        if not self.settings.urls:
            raise ValueError(f"{self.role}: no server URL")
        self._lb = Balancer(self.settings.urls)

    # -- lifecycle
    async def __aenter__(self) -> "SGLangEngine":
        self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _open(self) -> None:
        """The connection pool, sized to the concurrency limit, built once: shards of
        ``POOL_SHARD`` connections each, because httpcore scans its whole pool (with a
        term quadratic in idle connections) on every request and response; with one
        pool of 1,000 connections that scan was most of the client's CPU time
        (docs/benchmarks.md). A request takes a free slot of some shard."""
        if self._client is None:
            s = self.settings
            n = s.max_concurrency + 4
            m = min(POOL_SHARD, n)
            limits = httpx.Limits(max_connections=m, max_keepalive_connections=m)
            timeout = httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s)
            ssl = httpx.create_ssl_context(trust_env=False)  # loaded once, shared by the shards
            headers = auth_headers(self.role, s.api_key_env)
            self._shards = [httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False, verify=ssl,
                                              headers=headers)
                            for _ in range(-(-n // m))]
            self._slots = asyncio.Queue()
            for _ in range(m):
                for c in self._shards:
                    self._slots.put_nowait(c)
            self._client = self._shards[0]  # for one-off requests (model_info)
            self._sem = asyncio.Semaphore(s.max_concurrency)

    async def aclose(self) -> None:
        if self._client is not None:
            for c in self._shards:
                await c.aclose()
            self._client = None

    async def model_info(self) -> dict:
        self._open()
        url = self._lb.pick()
        try:
            r = await self._client.get(url + "/get_model_info", timeout=10.0)
            _check_auth(self.role, url, r)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise EngineError(self.role, f"{url} unreachable: {type(e).__name__}: {e}") from e

    # -- the two operations
    async def generate(self, input_ids: list[int], *, max_new_tokens: int, stop: list[str] | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       top_logprobs: int | None = None) -> Generation:
        try:
            return await self._generate(input_ids, max_new_tokens, stop, temperature, top_p, seed, top_logprobs)
        except ContextOverflow as e:
            # SGLang refuses prompt + max_new_tokens > context; learn the context length
            # from its message and retry once with the room that is left.
            m = _CONTEXT_RE.search(e.reason)
            if not m or self.context_length == int(m.group(1)) or len(input_ids) + 1 > int(m.group(1)):
                raise
            self.context_length = int(m.group(1))
            return await self._generate(input_ids, max_new_tokens, stop, temperature, top_p, seed, top_logprobs)

    async def _generate(self, input_ids, max_new_tokens, stop, temperature, top_p, seed, top_logprobs=None) -> Generation:
        """Sample up to ``max_new_tokens`` after ``input_ids``. The returned text and
        token ids include a matched stop string (``no_stop_trim``), so chunks
        concatenate exactly; an end-of-sequence token is dropped (finish ``eos``)."""
        if self.context_length and len(input_ids) + 1 > self.context_length:
            raise ContextOverflow(self.role, f"prompt of {len(input_ids)} tokens fills the context ({self.context_length})")
        if self.context_length:
            max_new_tokens = min(max_new_tokens, self.context_length - len(input_ids))
        params = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                  "no_stop_trim": True, "skip_special_tokens": True}
        if stop:
            params["stop"] = list(stop)
        if seed is not None:
            params["sampling_seed"] = int(seed) % (2**31)
        stats = RequestStats("generate", self.role, time.time(), prompt_tokens=len(input_ids))
        payload = {"input_ids": input_ids, "sampling_params": params}
        if top_logprobs:  # the top-N alternatives of every generated token (SpecReason's judge)
            payload |= {"return_logprob": True, "top_logprobs_num": int(top_logprobs), "return_text_in_logprobs": True}
        body = await self._post(payload, stats)
        meta = body.get("meta_info")
        ids = body.get("output_ids")
        text = body.get("text")
        if not isinstance(meta, dict) or not isinstance(ids, list) or not isinstance(text, str):
            raise EngineError(self.role, "malformed generate response (missing text, output_ids or meta_info)")
        fr = meta.get("finish_reason") or {}
        kind = fr.get("type") if isinstance(fr, dict) else None
        matched = fr.get("matched") if isinstance(fr, dict) else None
        if kind == "stop":
            finish = "stop" if isinstance(matched, str) else "eos"
            if finish == "eos" and ids and isinstance(matched, int) and ids[-1] == matched:
                ids = ids[:-1]  # the end-of-sequence token is not part of the chunk
        elif kind == "length":
            finish = "length"
        elif kind == "abort":
            msg = fr.get("message", "aborted")
            if "context" in str(msg).lower() or "too long" in str(msg).lower():
                raise ContextOverflow(self.role, str(msg))
            raise EngineError(self.role, f"generation aborted: {msg}")
        else:
            raise EngineError(self.role, f"malformed generate response (finish_reason {fr!r})")
        stats.output_tokens = len(ids)
        stats.cached_tokens = int(meta.get("cached_tokens") or 0)
        tops = _top_logprobs(meta, self.role) if top_logprobs else None
        return Generation(text, [int(t) for t in ids], finish, matched if finish == "stop" else None, stats, tops)

    async def score(self, prefix_ids: list[int], chunk_ids: list[int]) -> Scoring:
        """Exact logprobs of ``chunk_ids`` after ``prefix_ids``, first token included."""
        if not prefix_ids or not chunk_ids:
            raise ValueError("score needs a non-empty prefix and chunk")
        ids = list(prefix_ids) + list(chunk_ids)
        if self.context_length and len(ids) > self.context_length:
            raise ContextOverflow(self.role, f"scoring input of {len(ids)} tokens exceeds the context ({self.context_length})")
        p = len(prefix_ids)
        stats = RequestStats("score", self.role, time.time(), prompt_tokens=len(ids))
        body = await self._post({"input_ids": ids, "sampling_params": {"max_new_tokens": 0},
                                 "return_logprob": True, "logprob_start_len": p - 1}, stats,
                                check=lambda b: self._chunk_logprobs(b, chunk_ids))
        stats.cached_tokens = int(body["meta_info"].get("cached_tokens") or 0)
        return Scoring(list(chunk_ids), self._chunk_logprobs(body, chunk_ids), stats)

    def _chunk_logprobs(self, body: dict, chunk_ids: list[int]) -> list[float]:
        """The chunk's logprobs from a score response; MalformedResponse (retried) unless
        there are exactly len(chunk)+1 entries, each a finite logprob of the sent token."""
        meta = body.get("meta_info")
        entries = meta.get("input_token_logprobs") if isinstance(meta, dict) else None
        if not isinstance(entries, list) or len(entries) != len(chunk_ids) + 1:
            got = len(entries) if isinstance(entries, list) else None
            raise MalformedResponse(self.role, f"malformed score response: expected {len(chunk_ids) + 1} input_token_logprobs, got {got}")
        logprobs: list[float] = []
        for want, entry in zip(chunk_ids, entries[1:]):
            if not isinstance(entry, (list, tuple)) or len(entry) < 2 or entry[0] is None:
                raise MalformedResponse(self.role, f"malformed score response: bad logprob entry {entry!r}")
            lp, tok = float(entry[0]), int(entry[1])
            # SGLang reports ids >= vocab_size - 1 as 0 (its clip of multimodal hash ids,
            # `x < vocab_size - 1`); the logprob itself is that of the sent token.
            if (tok != want and tok != 0) or not math.isfinite(lp):
                raise MalformedResponse(self.role, f"malformed score response: token {tok} != {want} or logprob {lp}")
            logprobs.append(lp)
        return logprobs

    # -- transport
    async def _post(self, payload: dict, stats: RequestStats, check=None) -> dict:
        self._open()
        t_queue = time.perf_counter()
        async with self._sem:
            t0 = time.perf_counter()
            stats.queue_s = t0 - t_queue
            try:
                return await self._post_with_retries(payload, stats, check)
            finally:
                stats.service_s = time.perf_counter() - t0

    async def _post_with_retries(self, payload: dict, stats: RequestStats, check=None) -> dict:
        """POST /generate with up to ``retries`` retries (exponential backoff with jitter)
        on 5xx/429, transport errors and timeouts, invalid JSON, a body without meta_info,
        and a body that ``check`` (a validator raising MalformedResponse) rejects. When the
        retries are exhausted on server-level errors and the server does not answer
        /health, raise ServerDown (or wait for it, ``on_server_down: wait``)."""
        s = self.settings
        while True:
            body, last, server_fault = await self._attempts(payload, stats, check)
            if body is not None:
                return body
            if server_fault and not await self._healthy():
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
            url = self._lb.pick()
            stats.attempts += 1
            stats.url = url
            self.counters["requests"] += 1
            try:
                r = await self._send(url, payload)
                server_fault = r.status_code in _RETRY_STATUS
                if r.status_code in _RETRY_STATUS:
                    last = f"HTTP {r.status_code} from {url}"
                elif r.status_code in _AUTH_STATUS:
                    _check_auth(self.role, url, r)
                elif r.status_code == 400 and _looks_like_overflow(r.text):
                    raise ContextOverflow(self.role, r.text[:300])
                elif r.status_code >= 400:
                    raise EngineError(self.role, f"HTTP {r.status_code} from {url}: {r.text[:300]}")
                else:
                    try:
                        body = r.json()
                    except ValueError:
                        last = f"invalid JSON from {url}"
                    else:
                        if isinstance(body, dict):
                            if self.body_key not in body:
                                last = f"response without {self.body_key} from {url}"
                            else:
                                try:
                                    if check is not None:
                                        check(body)
                                    return body, "", False
                                except MalformedResponse as e:
                                    last = f"{e.reason} from {url}"
                        else:
                            last = f"unexpected response type from {url}"
            except (httpx.TransportError, httpx.DecodingError) as e:
                last = f"{type(e).__name__} from {url}: {e}"
                server_fault = isinstance(e, httpx.TransportError)
            if attempt < s.retries:
                self.counters["retries"] += 1
                delay = min(s.backoff_max_s, s.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
        return None, last, server_fault

    async def _healthy(self, probes: int = 3, gap_s: float = 1.0) -> bool:
        """Whether any of the role's servers answers /health with 200 within ``probes``
        tries ``gap_s`` apart (a loaded server may miss one probe)."""
        for i in range(probes):
            for url in self.settings.urls:
                try:
                    if (await self._client.get(url + "/health", timeout=10.0)).status_code == 200:
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
            if await self._healthy(probes=1):
                return True
            await asyncio.sleep(2.0)
        return False

    async def _send(self, url: str, payload: dict) -> httpx.Response:
        """One attempt on the pooled client, counted in flight on ``url`` for the
        balancer; a transport error or retryable status puts ``url`` on cool-down."""
        client = await self._slots.get()
        with self._lb.track(url):
            try:
                r = await client.post(url + self.api_path, json=payload)
            except httpx.TransportError:
                self._lb.failed(url)
                raise
            finally:
                self._slots.put_nowait(client)
        if r.status_code in _RETRY_STATUS:
            self._lb.failed(url)
        return r


def _check_auth(role: str, url: str, r: httpx.Response) -> None:
    """A 401/403 is the server's API key check: an EngineError saying what to set
    (not retried; the response body is not quoted, it may echo the header)."""
    if r.status_code in _AUTH_STATUS:
        raise EngineError(role, f"{url} refused the request (HTTP {r.status_code}): the server wants an API key; "
                                f"set {role}.api_key_env to the name of the environment variable that holds it")


def _top_logprobs(meta: dict, role: str) -> list[list[tuple[float, int, str]]]:
    rows = meta.get("output_top_logprobs")
    if not isinstance(rows, list):
        raise EngineError(role, "malformed generate response: top logprobs requested, output_top_logprobs missing")
    try:
        return [[(float(e[0]), int(e[1]), str(e[2]) if len(e) > 2 and e[2] is not None else "") for e in row]
                for row in rows]
    except (TypeError, ValueError, IndexError) as e:
        raise EngineError(role, f"malformed output_top_logprobs: {e}") from None


_CONTEXT_RE = re.compile(r"context length (?:of )?\(?(\d+)")


def _looks_like_overflow(text: str) -> bool:
    t = text.lower()
    return "context length" in t or "too long" in t or "maximum context" in t or "exceeds" in t
