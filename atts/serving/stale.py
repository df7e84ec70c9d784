"""Stale servers: processes named by the records of a previous launch (``servers.json``,
``ROLE.pid`` in the log directory) that are still alive and still run the recorded
command. Detection only; ``atts.serving.sglang`` stops them (``ServerGroup`` at the next
launch into the same place, ``atts servers stop`` on demand).

A recorded pid alone proves nothing: pids are reused. A process counts as the recorded
server only if it is the very process recorded: same pid and same start time
(``start_ticks``, field 22 of ``/proc/PID/stat``, recorded at launch; a reused pid starts
later). The command line is recorded too (``cmdline``) but is not what decides when the
start time is there: SGLang may retitle its processes (``setproctitle``), which rewrites
``/proc/PID/cmdline``. Records without a start time match on an equal ``cmdline``; bare
PID files match a process whose command line runs a server atts launches
(``sglang``, vLLM's api_server, the watchdog).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SERVER_MARKERS = ("sglang.launch_server", "sglang::", "vllm.entrypoints", "serving/watchdog.py")


@dataclass(frozen=True)
class Stale:
    role: str
    pid: int
    detached: bool  # started by `atts servers start` to outlive the shell
    source: Path  # the record that names it

    def describe(self) -> str:
        return f"{self.role} pid {self.pid}"


def cmdline(pid: int) -> list[str] | None:
    """The live process's argv, None if there is no such process (or it is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(") ", 1)[1][:1] == "Z":
                return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (OSError, IndexError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else None


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot; None if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(") ", 1)[1].split()[19])  # field 22; fields after ")" start at 3
    except (OSError, IndexError, ValueError):
        return None


def matches(pid: int, recorded: list[str] | None, recorded_start: int | None = None) -> bool:
    live = cmdline(pid)
    if live is None:
        return False
    if recorded_start is not None:
        return start_ticks(pid) == recorded_start
    if recorded:
        return live == list(recorded)
    return any(m in a for a in live for m in SERVER_MARKERS)


def _json_records(path: Path) -> dict[str, dict]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {r: v for r, v in doc.items() if isinstance(v, dict) and isinstance(v.get("pid"), int)} \
        if isinstance(doc, dict) else {}


def find_stale(log_dir: Path, json_paths: list[Path] | tuple[Path, ...] = ()) -> list[Stale]:
    """The recorded servers under ``log_dir`` (its ``servers.json`` and ``*.pid``) and in
    ``json_paths`` that are alive and run the recorded command, each pid once."""
    log_dir = Path(log_dir)
    found: dict[int, Stale] = {}
    for path in dict.fromkeys([log_dir / "servers.json", *map(Path, json_paths)]):
        for role, rec in _json_records(path).items():
            pid = rec["pid"]
            if pid not in found and matches(pid, rec.get("cmdline"), rec.get("start_ticks")):
                found[pid] = Stale(role, pid, bool(rec.get("detached", False)), path)
    recorded = {rec["pid"]: rec for rec in _json_records(log_dir / "servers.json").values()}
    for pid_file in sorted(log_dir.glob("*.pid")) if log_dir.is_dir() else []:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        rec = recorded.get(pid, {})
        if pid not in found and matches(pid, rec.get("cmdline"), rec.get("start_ticks")):
            found[pid] = Stale(pid_file.stem, pid, False, pid_file)
    return list(found.values())


def forget(log_dir: Path, stale: list[Stale]) -> None:
    """Remove the PID files of servers that were stopped."""
    for s in stale:
        (Path(log_dir) / f"{s.role}.pid").unlink(missing_ok=True)
