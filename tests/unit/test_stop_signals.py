"""atts.signals through the guard, in a tiny python child started as a script starts a
background job (SIGINT inherited ignored) or as a terminal does: SIGTERM stops it with
143 after its cleanup ran, SIGINT stops it with 130 unless it was ignored, and a signal
during a shielded stop says what is being stopped and does not interrupt it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The child: run_guarded around asyncio.run, whose main task holds a resource that must be
# cleaned up (like Session stopping servers); "ready" once it is inside, "cleaned" after.
CHILD = r"""
import asyncio, sys, time
from atts import errors, signals

mode = sys.argv[1]

async def spin():  # a task that is nearly always mid-step, where a signal lands inside it
    while True:
        sum(range(20000))
        await asyncio.sleep(0)

async def main():
    try:
        print("ready", flush=True)
        if mode == "busy":
            await asyncio.gather(*(spin() for _ in range(8)))
        await asyncio.sleep(60)
    finally:
        if mode == "shield":
            with signals.shielded("stopping the dummy server (pid 1), up to 2 s"):
                print("stopping", flush=True)
                time.sleep(2)
        print("cleaned", flush=True)

sys.exit(errors.run_guarded(lambda: asyncio.run(main())))
"""


def _start(mode: str, ignore_sigint: bool) -> subprocess.Popen:
    # what `bash -c 'trap "" INT; exec python ...' &` does: SIGINT ignored, inherited by exec
    # else SIGINT at its default, whatever pytest inherited (a suite started with `cmd &` from
    # a script runs with SIGINT ignored, and the child would inherit that)
    disposition = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
    pre = lambda: signal.signal(signal.SIGINT, disposition)  # noqa: E731
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=pre,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "ready"
    return p


@pytest.mark.parametrize("ignore_sigint", [True, False], ids=["sigint-ignored", "sigint-default"])
def test_sigterm_stops_cleanly_with_143_whatever_sigint(ignore_sigint):
    p = _start("plain", ignore_sigint)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 143, err
    assert "cleaned" in out and "terminated (SIGTERM): stopped cleanly" in err


def test_signal_landing_inside_a_task_stops_without_a_traceback():
    """CI saw `atts run` print "unhandled exception during asyncio.run() shutdown" and a
    traceback when SIGTERM landed inside a task mid ``socket.send``: the Stop is raised
    between tasks now, so every task is cancelled, none fails."""
    p = _start("busy", ignore_sigint=False)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 143 and "cleaned" in out, err
    assert "Traceback" not in err and "unhandled exception" not in err, err


def test_sigint_stops_with_130_where_not_ignored():
    p = _start("plain", ignore_sigint=False)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130 and "cleaned" in out and "interrupted" in err


def test_inherited_ignored_sigint_stays_ignored():
    p = _start("plain", ignore_sigint=True)
    p.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert p.poll() is None, "an ignored SIGINT (background job of a script) must not stop atts"
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert p.returncode == 143


def test_second_signal_during_the_stop_says_what_and_does_not_interrupt():
    p = _start("shield", ignore_sigint=False)
    p.send_signal(signal.SIGINT)
    assert p.stdout.readline().strip() == "stopping"
    p.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    out, err = p.communicate(timeout=20)
    assert p.returncode == 130 and "cleaned" in out, err
    assert "SIGINT received while stopping the dummy server (pid 1), up to 2 s" in err


def test_guard_restores_the_previous_handlers():
    from atts import errors

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert errors.run_guarded(lambda: 0) == 0
    assert {s: signal.getsignal(s) for s in before} == before
