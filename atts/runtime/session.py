"""A run's connection to its engines: launch the servers the config asks for (or use the
given URLs), build one engine and one prompter per role, and tear down on exit,
including on errors and Ctrl-C. ``Session`` is that whole block, used by every command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from atts.config import RunConfig
from atts.engines.openai import OpenAIEngine
from atts.engines.sglang import EngineError, EngineSettings, SGLangEngine
from atts.errors import UserError
from atts.runtime.runner import Chunking, ROLES, Role
from atts.serving.sglang import ServerGroup
from atts.tasks.prompts import Prompter


def chunking_of(cfg: RunConfig) -> Chunking:
    c = cfg.chunking
    return Chunking(tuple(c.stop), c.max_tokens_per_chunk, c.max_turns, c.token_budget, cfg.sampling.top_p,
                    cfg.sampling.seed)


@contextlib.contextmanager
def servers_for(cfg: RunConfig, log_dir: Path | None = None, servers_json: Path | None = None):
    """Yields {role: [urls]}; servers with ``launch: true`` live for the block."""
    out_dir = Path(cfg.output_dir)
    launch = [r for r in ROLES if getattr(cfg, r).launch]
    urls = {r: list(getattr(cfg, r).urls) for r in ROLES}
    if not launch:
        yield urls
        return
    specs = [getattr(cfg, r).server_spec(r) for r in launch]
    print(f"atts: starting {', '.join(launch)} server(s) ...", file=sys.stderr)
    with ServerGroup(specs, log_dir or out_dir / "logs", cfg.server_start_timeout_s,
                     servers_json=servers_json or out_dir / "servers.json") as started:
        for r, u in started.items():
            urls[r] = [u]
            print(f"atts: {r} server ready at {u}", file=sys.stderr)
        yield urls


def build_roles(cfg: RunConfig, urls: dict[str, list[str]]) -> dict[str, Role]:
    roles = {}
    for r in ROLES:
        m = getattr(cfg, r)
        engine_cls = OpenAIEngine if m.engine == "openai" else SGLangEngine
        if m.api_key_env and not os.environ.get(m.api_key_env):
            raise UserError(f"{r}.api_key_env: the environment variable {m.api_key_env} is not set "
                            "(it must hold the server's API key)")
        eng = engine_cls(r, EngineSettings(tuple(urls[r]), m.max_concurrency, m.timeout_s, retries=m.retries,
                                           backoff_s=m.backoff_s, on_server_down=m.on_server_down,
                                           down_wait_s=m.down_wait_s, api_key_env=m.api_key_env),
                         context_length=m.context_length,
                         **({"model": m.served_model_name} if m.engine == "openai" else {}))
        try:
            pr = Prompter(m.tokenizer_path, cfg.prompt.template, cfg.prompt.system)
        except (OSError, ValueError) as e:
            raise UserError(f"{r}: cannot load the tokenizer of {m.tokenizer_path!r}: {str(e).splitlines()[0]}") from None
        temp = cfg.sampling.draft_temperature if r == "draft" else cfg.sampling.target_temperature
        roles[r] = Role(r, eng, pr, temp)
    return roles


async def check_reachable(roles: dict[str, Role]) -> None:
    for r in roles.values():
        try:
            await r.engine.model_info()
        except EngineError as e:
            raise UserError(f"{r.name} server {', '.join(r.engine.settings.urls)} is unreachable: {e.reason}") from None


async def close_roles(roles: dict[str, Role]) -> None:
    for r in roles.values():
        await r.engine.aclose()


class Session:
    """The servers and engines of one command::

        async with Session(cfg) as s:      # servers up (if launch: true), roles built, reachable
            await evaluate_async(cfg, s.roles, ...)
                                           # engines closed, launched servers stopped

    ``s.urls`` is {role: [urls]}, ``s.roles`` {role: Role}. ``roles_for(cfg, urls)`` builds
    another role set on the same servers (pools sized to another config, or pointed at
    proxies); ``close(roles)`` closes a set early; every set still open is closed on exit,
    before the servers stop, whether the block ended normally, by an error or by Ctrl-C."""

    def __init__(self, cfg: RunConfig, *, log_dir: Path | None = None, servers_json: Path | None = None,
                 check: bool = True):
        self.cfg, self.log_dir, self.servers_json, self.check = cfg, log_dir, servers_json, check
        self.urls: dict[str, list[str]] = {}
        self.roles: dict[str, Role] = {}
        self._open: list[dict[str, Role]] = []
        self._servers = None

    async def __aenter__(self) -> "Session":
        self._servers = servers_for(self.cfg, self.log_dir, self.servers_json)
        self.urls = self._servers.__enter__()
        try:
            self.roles = self.roles_for(self.cfg)
            if self.check:
                await check_reachable(self.roles)
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        return self

    def roles_for(self, cfg: RunConfig, urls: dict[str, list[str]] | None = None) -> dict[str, Role]:
        roles = build_roles(cfg, self.urls if urls is None else urls)
        self._open.append(roles)
        return roles

    async def close(self, roles: dict[str, Role]) -> None:
        if any(r is roles for r in self._open):
            self._open = [r for r in self._open if r is not roles]
            await close_roles(roles)

    async def __aexit__(self, *exc) -> None:
        try:
            while self._open:
                await close_roles(self._open.pop())
        finally:
            if self._servers is not None:
                servers, self._servers = self._servers, None
                servers.__exit__(*exc)


def run_with_roles(cfg: RunConfig, fn):
    """``asyncio.run(fn(roles))`` against the config's server URLs (servers already
    running), closing the engines afterwards: for scripts and tests."""

    async def go():
        roles = build_roles(cfg, {r: list(getattr(cfg, r).urls) for r in ROLES})
        try:
            return await fn(roles)
        finally:
            await close_roles(roles)

    return asyncio.run(go())
