"""A run's connection to its engines: launch the servers the config asks for (or use the
given URLs), build one engine and one prompter per role, and tear down on exit,
including on errors and Ctrl-C."""

from __future__ import annotations

import contextlib
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
        eng = engine_cls(r, EngineSettings(tuple(urls[r]), m.max_concurrency, m.timeout_s, retries=m.retries,
                                           backoff_s=m.backoff_s, on_server_down=m.on_server_down,
                                           down_wait_s=m.down_wait_s),
                         context_length=m.context_length)
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


def run_with_roles(cfg: RunConfig, fn):
    """``asyncio.run(fn(roles))`` against the config's server URLs (servers already
    running), closing the engines afterwards: for scripts and tests."""
    import asyncio

    async def go():
        roles = build_roles(cfg, {r: list(getattr(cfg, r).urls) for r in ROLES})
        try:
            return await fn(roles)
        finally:
            await close_roles(roles)

    return asyncio.run(go())
