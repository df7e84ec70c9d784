"""``atts simulate --traces PATH --hardware HW.yaml --schedule S [--max-in-flight N]
[--prompts shared|research] [--draft-tokenizer DIR --target-tokenizer DIR] --output DIR``

(also ``python -m atts.sim``; the parser is `atts.cli`'s). Replays recorded traces through the project's
runner and policies on simulated servers; writes DIR/simulate.json, simulate.md and
simulate.png. ``atts simulate-fit RUN_DIR [RUN_DIR ...] --output HW.yaml`` (or
``python -m atts.sim fit-cpu ...``) fits a
linear (CPU testbed) hardware profile from runs' own request timings. See
docs/simulation.md.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path

import yaml

from atts.config import load_config, with_overrides
from atts.errors import run_guarded
from atts.method.conformal import CalibrationError
from atts.runtime.session import Session
from atts.sim.clock import VirtualDeadlock
from atts.sim.command import DEFAULT_CHARS_PER_TOKEN, simulate
from atts.sim.fit import fit_linear_profile
from atts.sim.hardware import HardwareError
from atts.sim.probe import probe_profile
from atts.sim.schedules import SCHEDULES, ScheduleError
from atts.sim.traces import TraceError

USER_ERRORS = (TraceError, HardwareError, ScheduleError, CalibrationError, VirtualDeadlock)


def _fmt(v, nd=2) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def simulate_command(a) -> int:
    """``atts simulate`` with its parsed arguments (the parser is `atts.cli`'s)."""
    def error(msg: str) -> int:
        print(f"atts simulate: {msg}", file=sys.stderr)
        return 2
    if a.chars_per_token <= 0 or a.target_only_factor <= 0:
        return error("--chars-per-token and --target-only-factor must be > 0")
    if bool(a.draft_tokenizer) != bool(a.target_tokenizer):
        return error("--draft-tokenizer and --target-tokenizer go together")
    for d in (a.draft_tokenizer, a.target_tokenizer):
        if d and not Path(d).is_dir():
            return error(f"tokenizer directory not found: {d}")
    try:
        doc = simulate(a.traces, a.hardware, a.schedule, a.output, max_in_flight=a.max_in_flight, prompts=a.prompts,
                       draft_tokenizer=a.draft_tokenizer, target_tokenizer=a.target_tokenizer,
                       chars_per_token=a.chars_per_token, target_only_factor=a.target_only_factor,
                       band=not a.no_band, real_wall_seconds=a.real_wall_seconds, calibration=a.calibration,
                       limit=a.limit, pipeline=None if a.pipeline is None else a.pipeline == "on",
                       samples_per_question=a.samples_per_question,
                       command=getattr(a, "command_line", "atts simulate"))
    except USER_ERRORS as e:
        print(f"atts simulate: {e}", file=sys.stderr)
        return 2
    vr = doc["vs_recorded"]
    print(f"wall {_fmt(doc['wall_seconds'], 1)} s, {_fmt(doc['samples_per_second'], 4)} samples/s, "
          f"{_fmt(doc['output_tokens_per_second'], 1)} output tok/s, latency median {_fmt(doc['latency_median'])} s "
          f"p90 {_fmt(doc['latency_p90'])} s")
    if vr.get("wall_error") is not None:
        print(f"vs recorded: wall error {100 * vr['wall_error']:+.1f} %, duration r = {_fmt(vr['duration_correlation_r'], 3)}")
    print(f"wrote {Path(a.output) / 'simulate.json'}, simulate.md")
    return 0


def fit_cpu_command(a) -> int:
    """``atts simulate-fit`` with its parsed arguments (the parser is `atts.cli`'s)."""
    if a.probe:
        if a.runs or not a.config:
            print("atts simulate-fit: --probe takes --config and no run directories", file=sys.stderr)
            return 2
        return run_guarded(lambda: _probe(a))
    if not a.runs:
        print("atts simulate-fit: give run directories, or --probe --config CFG", file=sys.stderr)
        return 2
    for d in a.runs:
        if not (Path(d) / "samples").is_dir():
            print(f"atts simulate fit-cpu: {d}: not an atts run directory", file=sys.stderr)
            return 2
    kv = dict(zip(("draft", "target"), a.kv_capacity_tokens))
    prof = fit_linear_profile(a.runs, kv)
    Path(a.output).write_text(yaml.safe_dump(prof, sort_keys=False))
    print(yaml.safe_dump(prof, sort_keys=False))
    return 0


def _probe(a) -> int:
    """Probe the config's servers (launched and stopped here if ``launch: true``)."""
    cfg = with_overrides(load_config(a.config), sets=a.set)

    async def go():
        async with Session(cfg) as s:
            return await probe_profile(cfg, s.urls)

    prof = asyncio.run(go())
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(yaml.safe_dump(prof, sort_keys=False))
    print(yaml.safe_dump(prof, sort_keys=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m atts.sim [fit-cpu] ...``: the `atts simulate` / `atts simulate-fit` commands."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cli = importlib.import_module("atts.cli")  # by name: atts.cli imports this module (no import circle)
    if argv and argv[0] == "fit-cpu":
        return cli.main(["simulate-fit", *argv[1:]])
    return cli.main(["simulate", *argv])


if __name__ == "__main__":
    sys.exit(main())
