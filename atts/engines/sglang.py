"""Async client for SGLang's native API: chunk generation and token-exact chunk scoring.

One `SGLangEngine` per role (draft, target), implementing `atts.engines.base.Engine`
over the shared `atts.engines.transport.Transport` (pool, concurrency bound, retries
with backoff, health, balancing, auth). It validates every response: a malformed
answer is retried, then an error, never a silently invented number.

Scoring (the heart of ATTS) uses ``/generate`` with ``input_ids = prefix + chunk``,
``max_new_tokens: 0``, ``return_logprob: true`` and ``logprob_start_len = P - 1`` where
``P = len(prefix)``. SGLang then returns logprobs for positions P-1..end with the first
entry null, so entries 1.. are exactly log p(chunk_i | prefix, chunk_<i), the chunk's
first token included. PPL = exp(-mean logprob).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

from atts.engines.base import (ContextOverflow, Engine, EngineSettings, Generation, MalformedResponse,  # noqa: F401
                               RequestStats, Scoring, ServerDown)
from atts.engines.transport import POOL_SHARD, Transport, TransportEngine, auth_headers  # noqa: F401  (re-exported)
from atts.errors import EngineError

# the engine contract's names, re-exported: `from atts.engines.sglang import Generation` keeps working
__all__ = ["ContextOverflow", "Engine", "EngineError", "EngineSettings", "Generation", "MalformedResponse",
           "RequestStats", "SGLangEngine", "Scoring", "ServerDown", "auth_headers"]


@dataclass
class SGLangEngine(TransportEngine):
    """`Engine` for SGLang's native ``/generate`` (see the module docstring)."""

    role: str
    settings: EngineSettings
    context_length: int | None = None
    _transport: Transport = field(init=False, repr=False)
    counters: dict = field(init=False)

    def __post_init__(self) -> None:
        self._transport = Transport(self.role, self.settings, api_path="/generate", body_key="meta_info")
        self.counters = self._transport.counters

    async def model_info(self) -> dict:
        _, info = await self._transport.get("/get_model_info")
        return info

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
        body = await self._transport.post(payload, stats)
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
        body = await self._transport.post({"input_ids": ids, "sampling_params": {"max_new_tokens": 0},
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

