"""An OpenAI-compatible chat client for the LLM answer extractor and judge.

Settings come from the environment, the same variables as the research code:
OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL (flags may override the URL and model,
never the key). The key is held only in memory: it is not part of ``repr``, never
written to a file or printed, and error messages are scrubbed of it before they are
stored or shown. Provenance records the model and the base URL only when the URL
carries no credentials (no user:password, no query string).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from atts.errors import LLMConfigError, UserError


def safe_url(url: str | None) -> str | None:
    """The base URL as it may be recorded: scheme://host[:port]/path, or None when it
    carries credentials that cannot be stripped (user info, a query string)."""
    if not url:
        return None
    u = urlsplit(url)
    if u.username or u.password or u.query or u.fragment:
        host = u.hostname or ""
        if u.port:
            host += f":{u.port}"
        return urlunsplit((u.scheme, host, u.path, "", ""))
    return url


@dataclass(frozen=True)
class LLMSettings:
    model: str
    base_url: str | None
    api_key: str = field(repr=False)
    timeout_s: float = 120.0
    retries: int = 3

    @classmethod
    def from_env(cls, model: str | None = None, base_url: str | None = None, timeout_s: float = 120.0,
                 retries: int = 3) -> "LLMSettings":
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise LLMConfigError("no model: set OPENAI_MODEL or pass --model")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if base_url is None:
                raise LLMConfigError("OPENAI_API_KEY is not set (needed for the default OpenAI endpoint)")
            key = "none"  # a local OpenAI-compatible server (SGLang, vLLM) needs no key
        return cls(model, base_url, key, timeout_s, retries)

    def provenance(self) -> dict:
        return {"model": self.model, "base_url": safe_url(self.base_url)}

    def stamp(self) -> dict:
        """What every stored LLM reply starts with: the provenance and the time (epoch, ISO)."""
        now = time.time()
        return {**self.provenance(), "time": now, "time_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def scrub(self, text: str) -> str:
        """``text`` with the key (and the raw base URL, which may embed credentials) removed."""
        out = str(text)
        if self.api_key and self.api_key != "none":
            out = out.replace(self.api_key, "***")
        if self.base_url and safe_url(self.base_url) != self.base_url:
            out = out.replace(self.base_url, safe_url(self.base_url) or "***")
        return out


class LLMClient:
    """AsyncOpenAI with at most ``concurrency`` requests in flight; the library retries
    connection errors, 429 and 5xx with backoff (``retries`` times)."""

    def __init__(self, settings: LLMSettings, concurrency: int = 8):
        from openai import AsyncOpenAI  # deferred: the openai client is optional (LLM re-extraction and judge only)

        self.settings = settings
        self._sem = asyncio.Semaphore(max(1, concurrency))
        self._client = AsyncOpenAI(api_key=settings.api_key, base_url=settings.base_url,
                                   timeout=settings.timeout_s, max_retries=settings.retries)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def chat(self, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> dict:
        """One completion: {"text", "finish_reason", "usage", "seconds"} or {"error"} (scrubbed)."""
        t0 = time.perf_counter()
        async with self._sem:
            try:
                r = await self._client.chat.completions.create(model=self.settings.model, messages=messages,
                                                               max_tokens=max_tokens, temperature=temperature)
            except Exception as e:  # every API failure is recorded per item, never fatal for the run
                return {"error": self.settings.scrub(f"{type(e).__name__}: {e}")[:500],
                        "seconds": time.perf_counter() - t0}
        c = r.choices[0]
        usage = r.usage.model_dump() if r.usage is not None else None
        return {"text": c.message.content or "", "finish_reason": c.finish_reason,
                "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")} if usage else None,
                "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- shared by reextract and judge

async def each_with_bar(items: list, one, *, desc: str, unit: str, progress: bool) -> None:
    """``await one(item)`` for every item at once (the client bounds the requests in
    flight), with a progress bar on stderr (a widget in notebooks) that each call ticks."""
    from atts.runtime.progress import stderr_bar

    bar = stderr_bar(len(items), desc, unit, progress)

    async def ticked(item) -> None:
        await one(item)
        bar.update(1)

    try:
        await asyncio.gather(*(ticked(x) for x in items))
    finally:
        bar.close()


def check_run_dir(d: Path) -> None:
    if not (d / "manifest.json").is_file() or not (d / "samples").is_dir():
        raise UserError(f"{d}: not an atts run directory (manifest.json and samples/)")
