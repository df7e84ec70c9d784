"""Servers die with the atts process that launched them, however it ends (kill -9, the
OOM killer, an interpreter crash included).

``python atts/serving/watchdog.py --tie-fd N [--grace S] -- ARGV...`` is what atts
launches in place of a server: a small process that starts ``ARGV`` (the server) as its
child, in its own process group, and stops the whole tree as soon as atts is gone.

Why a watchdog and not only ``prctl(PR_SET_PDEATHSIG)`` in the server:
- the parent-death signal fires when the *thread* that forked the child exits, not the
  process: a server launched from a worker thread (``asyncio.to_thread``, a test's
  helper thread) would be killed when that thread ends;
- it is not inherited across fork: SGLang's scheduler and detokenizer processes would not
  get it, and a SIGKILLed server leaves them running.

How atts's death is seen, two independent ways, each enough alone:
- the *tie pipe*: atts keeps the write end (``RunningServer.tie``; non-inheritable, so no
  other program atts starts holds it), the watchdog blocks on the read end, and the
  kernel closes it when atts dies however it dies: ``read`` returns EOF at once;
- ``getppid()`` changes (re-parenting to init or a subreaper), polled every 0.5 s, in case
  some forked process of atts still held the write end.

How the whole tree is stopped: the watchdog is a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so processes orphaned inside the tree (a SGLang scheduler
whose server died) are re-parented to it and stay visible as its descendants. It sends
SIGTERM to every descendant and to its process group, waits ``--grace`` seconds, then
SIGKILLs what is left. The server itself also gets ``PR_SET_PDEATHSIG(SIGKILL)`` (forked
from the watchdog's only thread, so the thread caveat does not apply): a watchdog killed
by someone takes its server with it.

Its process group is the whole tree (watchdog, server, the server's children), so the
usual ``stop_pid_tree(watchdog pid)`` of atts (killpg + descendants) stops everything;
a SIGTERM to the watchdog alone does the same stop. Its exit status is the server's.

The detached mode of ``atts servers start`` / ``scripts/launch_sglang_servers.sh``, meant
to outlive the shell, does not use it. It imports nothing but the standard library and
is run as a file, not with ``-m``: it works whatever the path atts was imported from, and
starts in tens of milliseconds beside every server.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_S = 0.5


def _prctl(option: int, value: int) -> bool:
    """Linux prctl through libc; False where it is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _server_preexec() -> None:  # runs in the forked server before exec
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, from /proc (no psutil: this runs beside every server)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap() -> None:
    """Collect exited children (orphans re-parented to us included), so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_tree(grace: float) -> None:
    """SIGTERM every descendant and our process group, SIGKILL what is left after ``grace``."""
    me = os.getpid()
    _signal_all(descendants(me), signal.SIGTERM)
    if os.getpgid(0) == me:  # only a group of our own (atts starts us as a session leader)
        try:
            os.killpg(me, signal.SIGTERM)  # our own handler only notes it
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap()
        if not descendants(me):
            return
        time.sleep(0.1)
    _signal_all(descendants(me), signal.SIGKILL)
    _reap()


class _Requested:
    stop = False


def _on_term(signum, frame) -> None:
    _Requested.stop = True


def watch(argv: list[str], tie_fd: int, grace: float) -> int:
    """Run ``argv`` as our child until it exits (return its status) or atts goes away or
    we are asked to stop (stop the tree, return 143)."""
    parent = os.getppid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # a Python handler, not SIG_IGN: exec resets it to the default in the server
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        server = subprocess.Popen(argv, preexec_fn=_server_preexec)  # same process group as us
    except OSError as e:
        print(f"atts watchdog: cannot start {argv[0]}: {e}", file=sys.stderr)
        return 127
    tie_open = tie_fd >= 0
    while True:
        status = server.poll()
        if status is not None:
            stop_tree(min(grace, 5.0))  # the server's own children, if it left any
            return status
        if _Requested.stop:
            break
        if os.getppid() != parent:
            print("atts watchdog: atts is gone (re-parented); stopping the server", file=sys.stderr, flush=True)
            break
        if tie_open:
            try:
                ready, _, _ = select.select([tie_fd], [], [], POLL_S)
            except InterruptedError:
                continue
            if ready and os.read(tie_fd, 64) == b"":
                print("atts watchdog: atts is gone (tie pipe closed); stopping the server", file=sys.stderr,
                      flush=True)
                break
        else:
            time.sleep(POLL_S)
    stop_tree(grace)
    server.poll()
    return 128 + signal.SIGTERM


def command(argv: list[str], tie_fd: int, grace: float) -> list[str]:
    """The argv that launches ``argv`` under a watchdog tied to ``tie_fd``."""
    return [sys.executable, os.path.abspath(__file__), "--tie-fd", str(tie_fd), "--grace", str(grace), "--",
            *argv]


def main(argv: list[str] | None = None) -> int:
    """``watchdog.py [--tie-fd FD] [--grace S] -- SERVER ARGV...``: an internal launcher
    with the fixed argv `command` builds, so a few lines parse it (atts.cli is the package's
    only argument parser, and this file runs on the standard library alone)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = {"--tie-fd": -1, "--grace": 15.0}
    while argv and argv[0] in opts:
        if len(argv) < 2:
            print(f"watchdog: {argv[0]} needs a value", file=sys.stderr)
            return 2
        opts[argv[0]] = type(opts[argv[0]])(argv[1])
        argv = argv[2:]
    cmd = argv[1:] if argv[:1] == ["--"] else argv
    if not cmd:
        print("watchdog: no server command given after --", file=sys.stderr)
        return 2
    return watch(cmd, int(opts["--tie-fd"]), float(opts["--grace"]))


if __name__ == "__main__":
    sys.exit(main())
