"""Engine client for OpenAI-compatible servers (vLLM), with the same interface as
`atts.engines.SGLangEngine`: ``generate(input_ids, ...) -> Generation`` and
``score(prefix_ids, chunk_ids) -> Scoring``, so every policy runs on either engine.

It is a sibling of SGLangEngine over the same `atts.engines.transport.Transport` (one
pooled client sized to the concurrency, the semaphore, retries with backoff, malformed
responses retried, balancing over several URLs, counters); only the mapping of the two
operations onto the API differs:

- generation: ``POST /v1/completions`` with the prompt given as token ids (a list of
  ints), ``stop``, ``seed``, ``include_stop_str_in_output: true`` (chunks concatenate
  exactly, as SGLang's ``no_stop_trim``) and ``return_token_ids: true`` for the sampled
  ids. Top logprobs, when asked for, come from ``logprobs: k`` with
  ``return_tokens_as_token_ids: true`` (keys ``token_id:N``).
- scoring: the prompt is ``prefix + chunk`` with ``max_tokens: 1``. With vLLM's
  ``prompt_logprobs: 0`` the answer holds, for every prompt position i >= 1,
  ``{str(token_i): {"logprob": log p(token_i | tokens_<i)}}`` (position 0 is null), so
  positions P..P+n-1 (P = len(prefix)) are exactly the chunk's logprobs, its first token
  included. Servers without ``prompt_logprobs`` (SGLang's OpenAI API) are scored with
  ``echo: true`` and ``logprobs: 0``: ``logprobs.token_logprobs`` then covers the prompt
  (first entry null) followed by the one sampled token. The first answer without
  ``prompt_logprobs`` switches the engine to echo for good.

The served model's name and context length come from ``GET /v1/models`` (vLLM reports
``max_model_len``), fetched once before the first request.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Literal

from atts.engines.base import ContextOverflow, EngineSettings, Generation, MalformedResponse, RequestStats, Scoring
from atts.engines.transport import Transport, TransportEngine
from atts.errors import EngineError

ScoringMode = Literal["auto", "prompt_logprobs", "echo"]


@dataclass
class OpenAIEngine(TransportEngine):
    """`atts.engines.base.Engine` for ``/v1/completions`` (see the module docstring)."""

    role: str
    settings: EngineSettings
    context_length: int | None = None
    scoring: ScoringMode = "auto"
    model: str | None = None  # the served model name (config: served_model_name); None: the first of /v1/models
    _model_lock: asyncio.Lock | None = field(default=None, init=False, repr=False)
    _transport: Transport = field(init=False, repr=False)
    counters: dict = field(init=False)

    def __post_init__(self) -> None:
        self._transport = Transport(self.role, self.settings, api_path="/v1/completions", body_key="choices")
        self.counters = self._transport.counters

    # -- the served model
    async def model_info(self) -> dict:
        """``{"model_path": name, "max_model_len": n}`` from ``/v1/models``; also sets
        the model name and, if not configured, the context length."""
        url, body = await self._transport.get("/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "id" not in data[0]:
            raise EngineError(self.role, f"{url}/v1/models lists no model")
        if self.model is not None and not any(isinstance(d, dict) and d.get("id") == self.model for d in data):
            served = ", ".join(str(d.get("id")) for d in data if isinstance(d, dict))
            raise EngineError(self.role, f"{url} does not serve the model {self.model!r} (served_model_name); "
                                         f"it serves: {served}")
        entry = next((d for d in data if d.get("id") == self.model), data[0])
        if self.model is None:
            self.model = str(entry["id"])
        max_len = entry.get("max_model_len")
        if self.context_length is None and isinstance(max_len, int) and max_len > 0:
            self.context_length = max_len
        return {"model_path": self.model, "max_model_len": max_len}

    async def _request(self, payload: dict, stats: RequestStats, check=None) -> dict:
        """The one choice of a completions answer; a body without exactly one choice, or
        whose choice ``check`` rejects (MalformedResponse), is retried by the transport."""
        if self.model is None:
            await self._request_model()

        def usable(body: dict) -> None:
            choice = _one_choice(self.role, body)
            if check is not None:
                check(choice)

        body = await self._transport.post({"model": self.model, **payload}, stats, check=usable)
        choices = body["choices"]
        usage = body.get("usage") or {}
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        if isinstance(details, dict):
            stats.cached_tokens = int(details.get("cached_tokens") or 0)
        return choices[0]

    # -- the two operations
    async def generate(self, input_ids: list[int], *, max_new_tokens: int, stop: list[str] | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       top_logprobs: int | None = None) -> Generation:
        """Sample up to ``max_new_tokens`` after ``input_ids``: text and ids include a
        matched stop string, an end-of-sequence token is dropped (finish ``eos``).
        ``top_logprobs=k`` also returns, per output position, the k most likely tokens'
        ``(logprob, token_id, "")`` (ids only: the caller decodes the text it needs)."""
        if self.model is None:
            await self._request_model()
        if self.context_length and len(input_ids) + 1 > self.context_length:
            raise ContextOverflow(self.role, f"prompt of {len(input_ids)} tokens fills the context ({self.context_length})")
        if self.context_length:
            max_new_tokens = min(max_new_tokens, self.context_length - len(input_ids))
        payload = {"prompt": list(input_ids), "max_tokens": max_new_tokens, "temperature": temperature,
                   "top_p": top_p, "include_stop_str_in_output": True, "skip_special_tokens": True,
                   "return_token_ids": True}
        if stop:
            payload["stop"] = list(stop)
        if seed is not None:
            payload["seed"] = int(seed) % (2**31)
        if top_logprobs:
            payload["logprobs"] = int(top_logprobs)
            payload["return_tokens_as_token_ids"] = True
        stats = RequestStats("generate", self.role, time.time(), prompt_tokens=len(input_ids))
        choice = await self._request(payload, stats)
        text, ids = choice.get("text"), choice.get("token_ids")
        if not isinstance(text, str) or not isinstance(ids, list):
            raise EngineError(self.role, "malformed completions response (missing text or token_ids: "
                                         "the server must support `return_token_ids`, vLLM >= 0.10.2)")
        reason, stop_reason = choice.get("finish_reason"), choice.get("stop_reason")
        if reason == "length":
            finish = "length"
        elif reason == "stop":
            finish = "stop" if isinstance(stop_reason, str) else "eos"
        else:
            raise EngineError(self.role, f"malformed completions response (finish_reason {reason!r})")
        ids = [int(t) for t in ids]
        tops = _top_logprobs(self.role, choice, len(ids)) if top_logprobs else None
        if finish == "eos" and ids and (stop_reason is None or stop_reason == ids[-1]):
            ids = ids[:-1]  # vLLM returns the end-of-sequence token; it is not part of the chunk
            tops = tops[:len(ids)] if tops is not None else None
        stats.output_tokens = len(ids)
        return Generation(text, ids, finish, stop_reason if finish == "stop" else None, stats, tops)

    async def score(self, prefix_ids: list[int], chunk_ids: list[int]) -> Scoring:
        """Exact logprobs of ``chunk_ids`` after ``prefix_ids``, first token included."""
        if not prefix_ids or not chunk_ids:
            raise ValueError("score needs a non-empty prefix and chunk")
        if self.model is None:
            await self._request_model()
        ids = list(prefix_ids) + list(chunk_ids)
        if self.context_length and len(ids) + 1 > self.context_length:
            # the one sampled token must fit too
            raise ContextOverflow(self.role, f"scoring input of {len(ids)} tokens exceeds the context ({self.context_length})")
        p = len(prefix_ids)
        stats = RequestStats("score", self.role, time.time(), prompt_tokens=len(ids))
        base = {"prompt": ids, "max_tokens": 1, "temperature": 0.0}
        if self.scoring in ("auto", "prompt_logprobs"):
            strict = self.scoring == "prompt_logprobs"

            def check(c: dict) -> None:  # no prompt_logprobs at all is "unsupported" (auto), not malformed
                if c.get("prompt_logprobs") is not None or strict:
                    _from_prompt_logprobs(self.role, c.get("prompt_logprobs"), ids, p)

            choice = await self._request({**base, "prompt_logprobs": 0}, stats, check)
            entries = choice.get("prompt_logprobs")
            if entries is not None or strict:
                self.scoring = "prompt_logprobs"
                return Scoring(list(chunk_ids), _from_prompt_logprobs(self.role, entries, ids, p), stats)
            self.scoring = "echo"  # the server ignored prompt_logprobs
        choice = await self._request({**base, "echo": True, "logprobs": 0}, stats,
                                     lambda c: _from_echo(self.role, c, ids, p))
        return Scoring(list(chunk_ids), _from_echo(self.role, choice, ids, p), stats)

    async def _request_model(self) -> None:
        """Learn the model name (and context length) once, before the first request."""
        self._transport.open()
        if self._model_lock is None:
            self._model_lock = asyncio.Lock()
        async with self._model_lock:
            if self.model is None:
                await self.model_info()


# ----------------------------------------------------------------------------- parsing


def _one_choice(role: str, body: dict) -> dict:
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        raise MalformedResponse(role, "malformed completions response (expected one choice)")
    return choices[0]


def _from_prompt_logprobs(role: str, entries, ids: list[int], p: int) -> list[float]:
    """Logprobs of ``ids[p:]`` from vLLM's ``prompt_logprobs``: one entry per prompt
    position, null first, else ``{str(token_id): {"logprob": x, ...}, ...}``."""
    if not isinstance(entries, list) or len(entries) != len(ids):
        got = len(entries) if isinstance(entries, list) else None
        raise MalformedResponse(role, f"malformed score response: expected {len(ids)} prompt_logprobs, got {got}")
    out = []
    for i in range(p, len(ids)):
        entry = entries[i]
        item = entry.get(str(ids[i])) if isinstance(entry, dict) else None
        lp = item.get("logprob") if isinstance(item, dict) else None
        if not isinstance(lp, (int, float)) or not math.isfinite(lp):
            raise MalformedResponse(role, f"malformed score response: no logprob for token {ids[i]} at position {i}")
        out.append(float(lp))
    return out


def _from_echo(role: str, choice: dict, ids: list[int], p: int) -> list[float]:
    """Logprobs of ``ids[p:]`` from an ``echo`` answer: ``logprobs.token_logprobs``
    covers the prompt (null first) and then the sampled token."""
    lp = choice.get("logprobs")
    values = lp.get("token_logprobs") if isinstance(lp, dict) else None
    if not isinstance(values, list) or len(values) < len(ids):
        got = len(values) if isinstance(values, list) else None
        raise MalformedResponse(role, f"malformed score response: expected >= {len(ids)} echoed token_logprobs, got {got} "
                                "(the server returns no prompt logprobs; for SGLang use `engine: sglang`)")
    tokens = lp.get("tokens")
    out = []
    for i in range(p, len(ids)):
        v = values[i]
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MalformedResponse(role, f"malformed score response: logprob {v!r} at position {i}")
        tok = _token_id(tokens[i]) if isinstance(tokens, list) and i < len(tokens) else None
        if tok is not None and tok != ids[i]:
            raise MalformedResponse(role, f"malformed score response: echoed token {tok} != {ids[i]} at position {i}")
        out.append(float(v))
    return out


def _token_id(token) -> int | None:
    """``token_id:N`` (vLLM's ``return_tokens_as_token_ids``) -> N; text tokens -> None."""
    if isinstance(token, str) and token.startswith("token_id:"):
        try:
            return int(token[len("token_id:"):])
        except ValueError:
            return None
    return None


def _top_logprobs(role: str, choice: dict, n: int) -> list[list[tuple[float, int, str]]]:
    """Per output position, [(logprob, token_id, "")]: the shape of
    ``Generation.top_logprobs`` (token ids come as ``token_id:N``; their text is left
    empty, the caller decodes the ids it needs)."""
    lp = choice.get("logprobs")
    tops = lp.get("top_logprobs") if isinstance(lp, dict) else None
    if not isinstance(tops, list) or len(tops) != n:
        got = len(tops) if isinstance(tops, list) else None
        raise EngineError(role, f"malformed generate response: expected {n} top_logprobs, got {got}")
    out = []
    for pos in tops:
        if not isinstance(pos, dict):
            raise EngineError(role, f"malformed generate response: top_logprobs entry {pos!r}")
        row = []
        for k, v in pos.items():
            tok = _token_id(k)
            if tok is None or not isinstance(v, (int, float)):
                raise EngineError(role, f"malformed generate response: top_logprobs key {k!r}")
            row.append((float(v), tok, ""))
        out.append(sorted(row, reverse=True))
    return out
