"""A loopback HTTP proxy that injects faults between atts and a real SGLang server.

Used by the fault tests and by the soak run (`atts.soak`): it forwards every request to
the upstream server and, on ``POST /generate`` only, replaces or damages the answer with
probability ``rate``. The fault kind of a damaged request is drawn uniformly from
``kinds``, with a seeded RNG, and counted:

    http500, http503  answer 500 / 503 without forwarding
    reset             close the connection without an answer (TCP RST)
    slow              hold the connection ``slow_s`` seconds (past the client's timeout), then close it
    truncated         forward, then send only the first half of the JSON body (Content-Length matches)
    no_meta           forward, then delete ``meta_info`` from the body
    no_logprobs       forward, then delete or shorten ``meta_info.input_token_logprobs``
                      (a request without logprobs gets ``no_meta`` instead, counted as such)

``/health`` and every other path are forwarded untouched, so a health probe tells a
dead server from injected faults. ``down()`` stops listening and drops every open
connection (an outage: connection refused); ``up()`` listens on the same port again.

The proxy runs its own event loop in a thread (`FaultProxy.start()` / ``stop()``, or
``with FaultProxy(...) as proxy:``), so tests and the soak driver can run atts in the
main thread or in a subprocess. Minimal HTTP/1.1: Content-Length bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter

import httpx

KINDS = ("http500", "http503", "reset", "slow", "truncated", "no_meta", "no_logprobs")

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
            503: "Service Unavailable", 502: "Bad Gateway"}


class FaultProxy:
    def __init__(self, upstream: str, rate: float, *, kinds: tuple[str, ...] = KINDS, seed: int = 0,
                 slow_s: float = 5.0, host: str = "127.0.0.1", port: int = 0):
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.kinds = tuple(kinds)
        self.slow_s = slow_s
        self.host = host
        self.port = port
        self.counts: Counter = Counter()  # requests, forwarded, and one entry per injected kind
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle (called from any thread)
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def injected(self) -> int:
        return sum(self.counts[k] for k in KINDS)

    def start(self) -> "FaultProxy":
        ready = threading.Event()

        def main():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), trust_env=False,
                                             limits=httpx.Limits(max_connections=512, max_keepalive_connections=512))
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = self._thread = None

    def down(self) -> None:
        """Outage: stop listening and drop open connections (clients see connection refused)."""
        asyncio.run_coroutine_threadsafe(self._close_listener(), self._loop).result(30)

    def up(self) -> None:
        """End of the outage: listen on the same port again."""
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(30)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inside the proxy's loop
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            _abort(w)
        self._writers.clear()

    async def _shutdown(self) -> None:
        await self._close_listener()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()

    def _draw(self) -> str | None:
        return self._rng.choice(self.kinds) if self._rng.random() < self.rate else None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                if not await self._serve(req, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is stopping (a cancelled handler would be logged as an error)
        finally:
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _serve(self, req: tuple[str, str, dict, bytes], writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must be dropped."""
        method, path, headers, body = req
        fault = None
        if method == "POST" and path.startswith("/generate"):
            self.counts["requests"] += 1
            fault = self._draw()
        if fault in ("http500", "http503"):
            self.counts[fault] += 1
            await _respond(writer, int(fault[4:]), b'{"error": "injected fault"}')
            return True
        if fault == "reset":
            self.counts[fault] += 1
            _abort(writer)
            return False
        if fault == "slow":
            self.counts[fault] += 1
            await asyncio.sleep(self.slow_s)
            _abort(writer)
            return False
        try:
            r = await self._client.request(method, self.upstream + path, content=body,
                                           headers={"content-type": headers.get("content-type", "application/json")})
        except httpx.HTTPError:
            _abort(writer)  # upstream unreachable: the client sees a dropped connection, as it would
            return False
        self.counts["forwarded"] += 1
        data = r.content
        if fault is not None:
            fault, data = self._damage(fault, data)
            self.counts[fault] += 1
        await _respond(writer, r.status_code, data, r.headers.get("content-type", "application/json"))
        return True

    def _damage(self, fault: str, data: bytes) -> tuple[str, bytes]:
        if fault == "truncated":
            return fault, data[: len(data) // 2]
        try:
            body = json.loads(data)
        except ValueError:
            return "truncated", data[: len(data) // 2]
        meta = body.get("meta_info") if isinstance(body, dict) else None
        if fault == "no_logprobs" and isinstance(meta, dict) and isinstance(meta.get("input_token_logprobs"), list):
            lps = meta["input_token_logprobs"]
            if self._rng.random() < 0.5 or len(lps) < 2:
                del meta["input_token_logprobs"]
            else:
                meta["input_token_logprobs"] = lps[: len(lps) - 1]
            return fault, json.dumps(body).encode()
        if isinstance(body, dict):
            body.pop("meta_info", None)
        return "no_meta", json.dumps(body).encode()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection between requests
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ValueError("chunked request bodies are not supported")
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes,
                   content_type: str = "application/json") -> None:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n")
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
