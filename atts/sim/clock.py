"""A virtual-time asyncio event loop.

The real runner and policies run on it unchanged: ``asyncio.sleep``, ``call_at``,
semaphores, events and cancellation behave as usual, but no time passes while any
callback is ready; when every task waits, the clock jumps to the next scheduled timer.
A run of an hour of virtual time therefore costs only the CPU of its events.

Contract:
- ``loop.time()`` is virtual seconds since the loop was made (starts at 0.0);
- real I/O readiness (the loop's self-pipe, ``call_soon_threadsafe``) is still polled,
  without blocking; work sent to the default executor runs inline, at once, in virtual
  time (the runner grades and writes records through ``run_in_executor``);
- if every task waits, no timer is scheduled and no executor work is pending, the run
  is deadlocked (on real servers it would hang): `VirtualDeadlock` is raised instead.
"""

from __future__ import annotations

import asyncio
import selectors


class VirtualDeadlock(RuntimeError):
    """Every task waits and nothing is scheduled: the simulated run can never finish."""


class _VirtualSelector(selectors.BaseSelector):
    """Wraps the real selector: polls it without blocking; a wait of ``timeout`` seconds
    advances the loop's virtual clock by ``timeout`` instead of sleeping."""

    def __init__(self, loop: "VirtualTimeLoop"):
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()

    def select(self, timeout=None):
        if self._loop.failure is not None:
            raise self._loop.failure
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise VirtualDeadlock("simulated run deadlocked: every task waits and no event is scheduled "
                                  "(e.g. a per-question barrier whose samples are held back by a cap)")
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is virtual (see module docs)."""

    def __init__(self):
        self._now = 0.0
        self.failure: BaseException | None = None
        super().__init__(_VirtualSelector(self))
        self._selector._loop = self
        self._clock_resolution = 1e-9

    def call_exception_handler(self, context) -> None:
        """An exception in a callback (a simulated server's) ends the run with it:
        otherwise the server would stop silently and the run deadlock."""
        exc = context.get("exception")
        if isinstance(exc, Exception) and self.failure is None and "future" not in context:
            self.failure = exc
        super().call_exception_handler(context)

    def time(self) -> float:
        return self._now

    def run_in_executor(self, executor, func, *args):
        """Default-executor work runs inline, at once (no virtual time passes); an
        explicit executor is used as asyncio would."""
        if executor is not None:
            return super().run_in_executor(executor, func, *args)
        f = self.create_future()
        try:
            f.set_result(func(*args))
        except BaseException as e:  # delivered to the awaiting coroutine, as a thread would
            f.set_exception(e)
        return f

    def advance(self, dt: float) -> None:
        self._now += max(0.0, dt)


def run(coro):
    """``asyncio.run(coro)`` on a fresh `VirtualTimeLoop`; returns (result, virtual seconds).
    On any exit, tasks still pending are cancelled and the loop closed."""
    loop = VirtualTimeLoop()
    try:
        asyncio.set_event_loop(loop)
        result = loop.run_until_complete(coro)
        return result, loop.time()
    finally:
        loop.failure = None
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
