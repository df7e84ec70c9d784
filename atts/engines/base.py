"""The engine contract: what a policy and the runner may ask of a model server.

An engine serves one role (draft or target). It must provide:

- ``generate(input_ids, *, max_new_tokens, stop, temperature, top_p, seed, top_logprobs)``
  → `Generation`: text and token ids include a matched stop string (chunks concatenate
  exactly); an end-of-sequence token is dropped (finish ``eos``);
- ``score(prefix_ids, chunk_ids)`` → `Scoring`: the exact logprob of every chunk token
  after the prefix, the chunk's first token included;
- ``model_info()`` → dict (``model_path`` at least), ``aclose()``, and ``async with``;
- ``counters`` (requests, retries, failures: read into ``summary.json``) and
  ``settings`` (`EngineSettings`).

Failures are `EngineError`; the two a caller must tell apart are `ContextOverflow`
(the sample stops, truncated) and `ServerDown` (the run stops, resumable).
`atts.engines.sglang.SGLangEngine` and `atts.engines.openai.OpenAIEngine` implement it
side by side over `atts.engines.transport.Transport`; `atts.testing.fakes` scripts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from atts.errors import EngineError

__all__ = ["ContextOverflow", "Engine", "EngineError", "EngineSettings", "Generation", "MalformedResponse",
           "RequestStats", "Scoring", "ServerDown"]


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
        return -sum(self.logprobs) / len(self.logprobs)  # (1/n) Σ -log p(x_i | x_<i)

    @property
    def ppl(self) -> float:
        return math.exp(self.mean_nll)  # PPL = exp(mean NLL)


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


@runtime_checkable
class Engine(Protocol):
    """What the runner and the policies use of an engine (see the module docstring)."""

    role: str
    settings: EngineSettings
    counters: dict

    async def generate(self, input_ids: list[int], *, max_new_tokens: int, stop: list[str] | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       top_logprobs: int | None = None) -> Generation: ...

    async def score(self, prefix_ids: list[int], chunk_ids: list[int]) -> Scoring: ...

    async def model_info(self) -> dict: ...

    async def aclose(self) -> None: ...
