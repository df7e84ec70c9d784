"""Stale servers: processes named by the records of a previous launch (``servers.json``,
``ROLE.pid`` in the log directory) that are still alive and still run the recorded
command. Detection only; ``atts.serving.sglang`` stops them (``ServerGroup`` at the next
launch into the same place, ``atts servers stop`` on demand).

A recorded pid alone proves nothing: pids are reused. A process counts as the recorded
server only if its ``/proc/PID/cmdline`` equals the recorded ``cmdline``; records written
before the command was recorded (a bare PID file) match a process whose command line
runs a server atts launches (``sglang.launch_server``, vLLM's api_server, the watchdog).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SERVER_MARKERS = ("sglang.launch_server", "vllm.entrypoints", "serving/watchdog.py")


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


def matches(pid: int, recorded: list[str] | None) -> bool:
    live = cmdline(pid)
    if live is None:
        return False
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
            if pid not in found and matches(pid, rec.get("cmdline")):
                found[pid] = Stale(role, pid, bool(rec.get("detached", False)), path)
    recorded_cmd = {rec["pid"]: rec.get("cmdline") for rec in _json_records(log_dir / "servers.json").values()}
    for pid_file in sorted(log_dir.glob("*.pid")) if log_dir.is_dir() else []:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid not in found and matches(pid, recorded_cmd.get(pid)):
            found[pid] = Stale(pid_file.stem, pid, False, pid_file)
    return list(found.values())


def forget(log_dir: Path, stale: list[Stale]) -> None:
    """Remove the PID files of servers that were stopped."""
    for s in stale:
        (Path(log_dir) / f"{s.role}.pid").unlink(missing_ok=True)
