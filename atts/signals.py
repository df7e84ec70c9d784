"""Stop signals: SIGTERM and SIGINT stop atts the same clean way, whatever the signal
dispositions it inherited. Bottom layer beside ``atts.errors``: imports nothing from atts.

Why handlers for both, installed explicitly: a background job of a non-interactive shell
(``cmd &`` in a batch script) inherits SIGINT *ignored*. atts used to turn SIGTERM into
SIGINT (``raise_signal``), so there the SIGTERM was lost, and a scheduler's SIGTERM at a
job's time limit always ended in the hard SIGKILL (measured on the testbed: atts and both
servers still running 41 s after SIGTERM). Now:

- SIGTERM always gets ``_handler``; exit status 143 (128 + 15).
- SIGINT gets ``_handler`` unless it was inherited ignored: a background job is meant to
  be deaf to the terminal's Ctrl-C, as every POSIX tool is; exit status 130 (128 + 2).

``_handler`` raises ``Stop``, a ``KeyboardInterrupt``, so every cleanup path that already
handles Ctrl-C (``asyncio.run`` cancelling the remaining tasks, ``Session.__aexit__``,
``ServerGroup.__exit__``) runs unchanged, and ``run_guarded`` returns ``128 + signum``.
While an event loop runs, ``Stop`` is raised from a loop callback, between tasks, never
inside one: raised inside a task (say mid ``socket.send``) it became that task's result, and
``asyncio.run``'s shutdown logged it as "unhandled exception" with a full traceback (seen
in CI on a SIGTERM mid-run).

While servers are being stopped (``shielded``), a further signal does not interrupt the
stop (which would leave servers behind): it prints what is being stopped and how long it
may take. A SIGKILL then still leaves nothing behind: the server watchdog
(``atts.serving.watchdog``) stops the servers when atts dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

received: list[int] = []  # the stop signals received since the outermost ``handling`` began
_shield: list[str] = []  # what the stops in progress are doing, innermost last
_depth = 0  # nesting of ``handling`` (run_guarded around ServerGroup)


class Stop(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which. A KeyboardInterrupt, so that code
    written for Ctrl-C cleans up the same way."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(exc: BaseException) -> int:
    """The shell convention for a process stopped by a signal: 128 + signum (SIGINT 130,
    SIGTERM 143); a plain KeyboardInterrupt counts as SIGINT."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def _handler(signum, frame) -> None:
    received.append(signum)
    if _shield:
        print(f"atts: {signal.Signals(signum).name} received while {_shield[-1]}; waiting for that to finish "
              "so that nothing is left running", file=sys.stderr, flush=True)
        return
    try:
        loop = asyncio.get_running_loop()  # the loop running in this (main) thread, if any
    except RuntimeError:
        loop = None
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(_raise_stop, signum)  # wakes the selector; raised outside every task
        return
    raise Stop(signum)


def _raise_stop(signum: int) -> None:
    raise Stop(signum)


@contextlib.contextmanager
def handling():
    """Install ``_handler`` for SIGTERM, and for SIGINT unless it is ignored, for the block;
    restore the previous handlers after it. Outside the main thread (where Python allows
    no handler) it does nothing."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in STOP_SIGNALS:
        if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
            continue  # inherited ignored: a background job of a script; keep it that way
        previous[sig] = signal.signal(sig, _handler)
    if _depth == 0:
        received.clear()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, h in previous.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def shielded(what: str):
    """For the block, a stop signal prints ``what`` (e.g. "stopping the draft server (pid
    123), up to 20 s") instead of interrupting it. For stops that must complete. If the
    block began while no stop was under way (e.g. stopping stale servers at start-up) and
    ends normally after such a signal, the signal takes effect then (``Stop``)."""
    seen = len(received)
    _shield.append(what)
    try:
        yield
    finally:
        _shield.pop()
    if received and not seen and not _shield:  # no stop was under way when the block began
        raise Stop(received[-1])
