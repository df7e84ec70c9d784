"""``atts servers start|stop``: start the draft and target SGLang servers in the background
(printing their URLs, recording pids and command lines in the log directory) or stop the
recorded ones.

``start`` launches them detached (no watchdog: they outlive the shell, as
``scripts/launch_sglang_servers.sh`` documents). It refuses, exit 2, a log directory whose
records name servers that still run (their records would be overwritten and the servers
forgotten). ``stop`` stops every recorded server that still runs the recorded command
(detached ones, and ones a killed ``atts run`` left behind), and removes the PID files."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

from atts.config import load_config
from atts.errors import ServerError
from atts.serving.sglang import RunningServer, start_server, stop_pid_tree, stop_servers, stop_stale, wait_ready, write_records
from atts.serving.stale import find_stale
from atts.serving.spec import DEFAULT_HOST, ServerSpec


def _specs_from_args(args) -> list[ServerSpec]:
    if args.config:
        cfg = load_config(args.config)
        specs = []
        for role in ("draft", "target"):  # flags given beside --config win over it
            spec = getattr(cfg, role).server_spec(role)
            port = getattr(args, f"{role}_port")
            over = {k: v for k, v in (("port", port), ("host", args.host)) if v is not None}
            specs.append(dataclasses.replace(spec, **over))
        return specs
    if not (args.draft_model and args.target_model):
        raise SystemExit("error: give --config CFG, or both --draft-model and --target-model")
    device = args.device or ("cuda" if _has_cuda() else "cpu")
    common = dict(device=device, host=args.host, mem_fraction_static=args.mem_fraction_static)
    return [
        ServerSpec("draft", args.draft_model, port=args.draft_port, tp=args.draft_tp, gpu_ids=args.draft_gpus, **common),
        ServerSpec("target", args.target_model, port=args.target_port, tp=args.target_tp, gpu_ids=args.target_gpus, **common),
    ]


def _has_cuda() -> bool:
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def command(args) -> int:
    """``atts servers`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""
    log_dir = Path(args.log_dir)

    if args.cmd == "stop":
        stopped = stop_stale(log_dir, keep_detached=False, prefix="atts servers stop")
        for s in stopped:
            print(f"stopped {s.role} (pid {s.pid})", file=sys.stderr)
        for pid_file in log_dir.glob("*.pid"):  # the rest name no running server
            pid_file.unlink(missing_ok=True)
        if not stopped:
            print(f"no running servers recorded in {log_dir}", file=sys.stderr)
        return 0

    live = find_stale(log_dir)
    if live:
        print(f"error: {log_dir} records servers that still run ({', '.join(s.describe() for s in live)}); "
              f"stop them first: atts servers stop --log-dir {log_dir}", file=sys.stderr)
        return 2
    specs = _specs_from_args(args)
    servers: list[RunningServer] = []
    try:
        for spec in specs:
            servers.append(start_server(spec, log_dir, detached=True))
        write_records(servers, log_dir)
        wait_ready(servers, args.timeout)
    except (ServerError, KeyboardInterrupt) as e:
        stop_servers(servers)
        for s in servers:
            (log_dir / f"{s.spec.role}.pid").unlink(missing_ok=True)
        print(f"error: {e}" if isinstance(e, ServerError) else "interrupted", file=sys.stderr)
        return 1
    for s in servers:
        print(s.url)
    return 0


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["servers", *sys.argv[1:]]))
