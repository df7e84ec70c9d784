"""runtime.Session, the one server/engine block every command uses: engines built and
checked on entry; every role set still open closed on exit, before the launched servers
stop, also when the body or the reachability check fails. Fakes stand in for servers."""

import asyncio
import contextlib

import pytest

from atts.errors import UserError
from atts.runtime import session as session_mod
from atts.runtime.session import Session


class _Engine:
    def __init__(self, log, name):
        self.log, self.name = log, name

    async def aclose(self):
        self.log.append(f"close {self.name}")


class _Role:
    def __init__(self, log, name):
        self.engine = _Engine(log, name)


@pytest.fixture
def fake(monkeypatch):
    log = []

    @contextlib.contextmanager
    def servers_for(cfg, log_dir=None, servers_json=None):
        log.append("servers up")
        try:
            yield {"draft": ["u1"], "target": ["u2"]}
        finally:
            log.append("servers down")

    def build_roles(cfg, urls):
        tag = "+".join(u for us in urls.values() for u in us)
        return {"draft": _Role(log, f"draft@{tag}"), "target": _Role(log, f"target@{tag}")}

    async def check_reachable(roles):
        if log and getattr(check_reachable, "fail", False):
            raise UserError("unreachable")

    monkeypatch.setattr(session_mod, "servers_for", servers_for)
    monkeypatch.setattr(session_mod, "build_roles", build_roles)
    monkeypatch.setattr(session_mod, "check_reachable", check_reachable)
    return log, check_reachable


def test_closes_every_open_role_set_before_the_servers_stop(fake):
    log, _ = fake

    async def go():
        async with Session(cfg=None) as s:
            extra = s.roles_for(None, {"draft": ["p1"], "target": ["p2"]})
            early = s.roles_for(None)
            await s.close(early)
            await s.close(early)  # closing twice is a no-op
            assert s.urls == {"draft": ["u1"], "target": ["u2"]} and extra is not s.roles

    asyncio.run(go())
    assert log[0] == "servers up" and log[-1] == "servers down"
    closes = log[1:-1]
    assert closes.count("close draft@u1+u2") == 2 and closes.count("close draft@p1+p2") == 1
    assert len(closes) == 6


def test_failed_check_or_body_still_closes_and_stops(fake):
    log, check = fake

    async def body_fails():
        async with Session(cfg=None):
            raise ValueError("boom")

    with pytest.raises(ValueError):
        asyncio.run(body_fails())
    assert log == ["servers up", "close target@u1+u2", "close draft@u1+u2", "servers down"] or \
        log == ["servers up", "close draft@u1+u2", "close target@u1+u2", "servers down"]

    log.clear()
    check.fail = True

    async def unreachable():
        async with Session(cfg=None):
            raise AssertionError("not reached")

    with pytest.raises(UserError):
        asyncio.run(unreachable())
    assert log[0] == "servers up" and log[-1] == "servers down" and len(log) == 4
