"""SGLang server lifecycle: launch, wait for readiness, record, stop whole process trees.

Used three ways:
- embedded: ``with ServerGroup(specs, log_dir) as urls:`` starts the draft and target
  servers on free ports, and stops them on exit, on errors and on Ctrl-C;
- detached: ``python -m atts.servers start ...`` (what ``scripts/launch_sglang_servers.sh``
  calls) starts them in the background, writes PID files and ``servers.json`` under the
  log directory, prints one URL per line and returns;
- ``python -m atts.servers stop`` (``scripts/stop_sglang_servers.sh``) stops them.

No shell is involved: argv lists are passed to ``subprocess`` as they are.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from atts.errors import ServerError, sigterm_to_interrupt
from atts.serving.spec import DEFAULT_HOST, ServerSpec

@dataclass
class RunningServer:
    spec: ServerSpec
    url: str
    pid: int
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def record(self) -> dict:
        return {"role": self.spec.role, "url": self.url, "pid": self.pid, "pgid": self.pid,
                "model_path": self.spec.model_path, "log": str(self.log_path)}


def free_port(host: str = DEFAULT_HOST) -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_server(spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Start one server in its own process session (so that its whole tree can be
    signalled), without waiting for readiness."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = spec.port or free_port(spec.host)
    log_path = log_dir / f"{spec.role}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(spec.argv(port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=spec.env(), start_new_session=True)
    return RunningServer(spec, f"http://{spec.host}:{port}", proc.pid, log_path, proc)


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


def stop_pid_tree(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` and every descendant, then SIGKILL what
    is left after ``grace`` seconds."""
    pids = [pid, *_tree_pids(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
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
    for s in servers:
        stop_pid_tree(s.pid)
        if s.proc is not None:
            try:
                s.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


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
        # SIGTERM takes the same path as Ctrl-C, so that __exit__ stops the servers (they
        # run in their own sessions and would otherwise outlive us).
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
        try:
            for spec in self.specs:
                self.servers.append(start_server(spec, self.log_dir))
            write_records(self.servers, self.log_dir, self.servers_json)
            wait_ready(self.servers, self.timeout)
        except BaseException:
            stop_servers(self.servers)
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            raise
        return {s.spec.role: s.url for s in self.servers}

    def __exit__(self, *exc) -> None:
        try:
            stop_servers(self.servers)
            for s in self.servers:
                (self.log_dir / f"{s.spec.role}.pid").unlink(missing_ok=True)
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
