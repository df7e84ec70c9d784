"""SGLang server lifecycle: launch, wait for readiness, record, stop whole process trees.

Used three ways:
- embedded: ``with ServerGroup(specs, log_dir) as urls:`` starts the draft and target
  servers on free ports, and stops them on exit, on errors, on Ctrl-C and SIGTERM; each
  runs under a watchdog (`atts.serving.watchdog`) that stops it if atts dies (kill -9
  included). Servers of a previous launch into the same log directory that are still
  running (`atts.serving.stale`) are reported in one line and stopped first;
- detached: ``python -m atts.servers start ...`` (what ``scripts/launch_sglang_servers.sh``
  calls) starts them in the background, untied (no watchdog: they outlive the shell), writes PID files and ``servers.json`` under the
  log directory, prints one URL per line and returns;
- ``python -m atts.servers stop`` (``scripts/stop_sglang_servers.sh``) stops them.

No shell is involved: argv lists are passed to ``subprocess`` as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from atts import signals
from atts.errors import ServerError
from atts.serving import stale as stale_mod
from atts.serving import watchdog
from atts.serving.spec import DEFAULT_HOST, ServerSpec

STOP_GRACE_S = 15.0  # SIGTERM -> SIGKILL; a stop takes at most this + 5 s per server

@dataclass
class RunningServer:
    spec: ServerSpec
    url: str
    pid: int
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    cmdline: list[str] = field(default_factory=list)  # what `pid` runs: how a later launch recognises it
    tie: int | None = field(default=None, repr=False)  # write end of the watchdog's tie pipe (None: detached)

    def record(self) -> dict:
        return {"role": self.spec.role, "url": self.url, "pid": self.pid, "pgid": self.pid,
                "model_path": self.spec.model_path, "log": str(self.log_path), "cmdline": self.cmdline,
                "start_ticks": stale_mod.start_ticks(self.pid), "detached": self.tie is None}

    def untie(self) -> None:
        if self.tie is not None:
            os.close(self.tie)
            self.tie = None


def free_port(host: str = DEFAULT_HOST) -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_server(spec: ServerSpec, log_dir: Path, *, detached: bool = False) -> RunningServer:
    """Start one server in its own process session (so that its whole tree can be
    signalled), without waiting for readiness. Tied (the default): under a watchdog that
    stops the tree when this process dies; ``detached``: the server alone, outliving us."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = spec.port or free_port(spec.host)
    log_path = log_dir / f"{spec.role}.log"
    argv, tie, pass_fds = spec.argv(port), None, ()
    if not detached:
        read_end, tie = os.pipe()  # both non-inheritable; only the watchdog gets read_end
        argv, pass_fds = watchdog.command(argv, read_end, STOP_GRACE_S), (read_end,)
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=spec.env(), start_new_session=True, pass_fds=pass_fds)
    except BaseException:
        if tie is not None:
            os.close(tie)
        raise
    finally:
        for fd in pass_fds:
            os.close(fd)
    return RunningServer(spec, f"http://{spec.host}:{port}", proc.pid, log_path, proc, list(argv), tie)


def _alive(server: RunningServer) -> bool:
    if server.proc is not None:
        return server.proc.poll() is None
    try:
        os.kill(server.pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def wait_ready(servers: list[RunningServer], timeout: float = 300.0) -> None:
    """Poll ``/health`` until every server answers 200. A server that exits, or does not
    come up within ``timeout``, raises ServerError with its log tail."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while pending:
            for s in list(pending):
                if not _alive(s):
                    raise ServerError(f"{s.spec.role} server exited during start-up; log {s.log_path}:\n"
                                      f"{log_tail(s.log_path)}")
                try:
                    if client.get(s.url + "/health").status_code == 200:
                        pending.remove(s)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                s = pending[0]
                raise ServerError(f"{s.spec.role} server not ready after {timeout:.0f}s; log {s.log_path}:\n"
                                  f"{log_tail(s.log_path)}")
            if pending:
                time.sleep(0.5)


def _tree_pids(pid: int) -> list[int]:
    try:
        import psutil  # deferred: optional (any failure: no children listed)

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def stop_pid_tree(pid: int, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group led by ``pid`` and every descendant, then SIGKILL what
    is left after ``grace`` seconds."""
    stop_pid_trees([pid], grace)


def stop_pid_trees(leaders: list[int], grace: float = STOP_GRACE_S) -> None:
    """``stop_pid_tree`` of several trees at once: one grace period for all (two servers
    stop within ``grace`` + 5 s, not twice that: a SIGTERM must end atts within 30 s)."""
    pids = [p for pid in leaders for p in (pid, *_tree_pids(pid))]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in leaders:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for p in pids:
            try:
                os.kill(p, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            live = [p for p in pids if _pid_alive(p)]
            if not live:
                return
            time.sleep(0.2)


def _pid_alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_servers(servers: list[RunningServer]) -> None:
    """Stop each server's tree. Not interruptible: a stop signal meanwhile says what is
    being stopped and how long it may take (`atts.signals.shielded`), and the stop goes on."""
    if not servers:
        return
    what = (f"stopping the {', '.join(s.spec.role for s in servers)} server(s) (pid "
            f"{', '.join(str(s.pid) for s in servers)}), up to {STOP_GRACE_S + 5:.0f} s")
    with signals.shielded(what):
        stop_pid_trees([s.pid for s in servers])
        for s in servers:
            if s.proc is not None:
                try:
                    s.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            s.untie()


def stop_stale(log_dir: Path, json_paths: list[Path] | tuple[Path, ...] = (), *, keep_detached: bool = True,
               prefix: str = "atts") -> list[stale_mod.Stale]:
    """Report, in one line, the servers of a previous launch recorded under ``log_dir`` (and
    in ``json_paths``) that still run, and stop them; detached ones (``atts servers
    start``) are only reported when ``keep_detached``. Returns those stopped."""
    found = stale_mod.find_stale(log_dir, json_paths)
    if not found:
        return []
    stop = [s for s in found if not (keep_detached and s.detached)]
    kept = [s for s in found if s not in stop]
    parts = []
    if stop:
        parts.append(f"stopping {len(stop)} server(s) of a previous launch recorded in {log_dir}, still running "
                     f"({', '.join(s.describe() for s in stop)})")
    if kept:
        parts.append(f"leaving {len(kept)} detached server(s) running ({', '.join(s.describe() for s in kept)}; "
                     f"stop them with: atts servers stop --log-dir {log_dir})")
    print(f"{prefix}: {'; '.join(parts)}", file=sys.stderr, flush=True)
    with signals.shielded(f"stopping stale server(s) {', '.join(s.describe() for s in stop)}, "
                          f"up to {STOP_GRACE_S + 5:.0f} s"):
        stop_pid_trees([s.pid for s in stop])
    stale_mod.forget(log_dir, stop)
    return stop


def write_records(servers: list[RunningServer], log_dir: Path, json_path: Path | None = None) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for s in servers:
        (log_dir / f"{s.spec.role}.pid").write_text(f"{s.pid}\n")
    payload = {s.spec.role: s.record() for s in servers}
    for path in {log_dir / "servers.json", *( [json_path] if json_path else [])}:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)


class ServerGroup:
    """Context manager: launch servers together, wait for all, stop all on exit
    (normal exit, exceptions and KeyboardInterrupt alike)."""

    def __init__(self, specs: list[ServerSpec], log_dir: Path, timeout: float = 300.0,
                 servers_json: Path | None = None):
        self.specs = specs
        self.log_dir = Path(log_dir)
        self.timeout = timeout
        self.servers_json = servers_json
        self.servers: list[RunningServer] = []

    def __enter__(self) -> dict[str, str]:
        # SIGTERM and SIGINT raise KeyboardInterrupt (atts.signals), so that __exit__ stops
        # the servers; the watchdogs stop them if we die without running it.
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(signals.handling())
        try:
            stop_stale(self.log_dir, [self.servers_json] if self.servers_json else [])
            for spec in self.specs:
                self.servers.append(start_server(spec, self.log_dir))
            write_records(self.servers, self.log_dir, self.servers_json)
            wait_ready(self.servers, self.timeout)
        except BaseException:
            try:
                stop_servers(self.servers)
            finally:
                self._signals.close()
            raise
        return {s.spec.role: s.url for s in self.servers}

    def __exit__(self, *exc) -> None:
        try:
            stop_servers(self.servers)
            for s in self.servers:
                (self.log_dir / f"{s.spec.role}.pid").unlink(missing_ok=True)
        finally:
            self._signals.close()
