"""``python -m atts.sim --traces PATH --hardware HW.yaml --schedule S [--max-in-flight N]
[--prompts shared|research] [--draft-tokenizer DIR --target-tokenizer DIR] --output DIR``

(`atts simulate` once wired into the CLI.) Replays recorded traces through the project's
runner and policies on simulated servers; writes DIR/simulate.json, simulate.md and
simulate.png. ``python -m atts.sim fit-cpu RUN_DIR [RUN_DIR ...] --output HW.yaml`` fits a
linear (CPU testbed) hardware profile from runs' own request timings. See
docs/simulation.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from atts.method.conformal import CalibrationError
from atts.sim.clock import VirtualDeadlock
from atts.sim.command import DEFAULT_CHARS_PER_TOKEN, simulate
from atts.sim.fit import fit_linear_profile
from atts.sim.hardware import HardwareError
from atts.sim.schedules import SCHEDULES, ScheduleError
from atts.sim.traces import TraceError

USER_ERRORS = (TraceError, HardwareError, ScheduleError, CalibrationError, VirtualDeadlock)


def _fmt(v, nd=2) -> str:
    return "-" if v is None else f"{v:,.{nd}f}"


def main_simulate(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="atts simulate", description="Project wall time and throughput from traces.")
    ap.add_argument("--traces", required=True, help="an atts run dir, a .jsonl(.gz) traces file, or problem_XXXX.json dir")
    ap.add_argument("--hardware", required=True, help="hardware profile (configs/hardware/*.yaml)")
    ap.add_argument("--schedule", required=True, choices=SCHEDULES)
    ap.add_argument("--max-in-flight", type=int, help="samples (and requests per role) in flight (default: all)")
    ap.add_argument("--prompts", choices=("shared", "research"),
                    help="scoring prompts: shared prefix with generation (the project's) or research-style text")
    ap.add_argument("--draft-tokenizer", help="tokenizer dir of the draft (exact token counts)")
    ap.add_argument("--target-tokenizer", help="tokenizer dir of the target (exact token counts)")
    ap.add_argument("--chars-per-token", type=float, default=DEFAULT_CHARS_PER_TOKEN,
                    help=f"estimate without a tokenizer (default {DEFAULT_CHARS_PER_TOKEN})")
    ap.add_argument("--target-only-factor", type=float, default=1.0,
                    help="target_only length = factor x each sample's kept tokens (default 1.0)")
    ap.add_argument("--real-wall-seconds", type=float, help="the recorded run's wall time, to report the error")
    ap.add_argument("--calibration", help="calibration (.json atts file or .npy PPL array) if not beside the traces")
    ap.add_argument("--pipeline", choices=("on", "off"), help="ATTS pipelining (default: the recorded run's, else on)")
    ap.add_argument("--limit", type=int, help="first N questions only")
    ap.add_argument("--samples-per-question", type=int, default=16, help="problem_XXXX.json dirs: repeats per question")
    ap.add_argument("--no-band", action="store_true", help="skip the sensitivity band (two more replays)")
    ap.add_argument("--output", required=True)
    a = ap.parse_args(argv)
    if a.chars_per_token <= 0 or a.target_only_factor <= 0:
        ap.error("--chars-per-token and --target-only-factor must be > 0")
    if bool(a.draft_tokenizer) != bool(a.target_tokenizer):
        ap.error("--draft-tokenizer and --target-tokenizer go together")
    for d in (a.draft_tokenizer, a.target_tokenizer):
        if d and not Path(d).is_dir():
            ap.error(f"tokenizer directory not found: {d}")
    try:
        doc = simulate(a.traces, a.hardware, a.schedule, a.output, max_in_flight=a.max_in_flight, prompts=a.prompts,
                       draft_tokenizer=a.draft_tokenizer, target_tokenizer=a.target_tokenizer,
                       chars_per_token=a.chars_per_token, target_only_factor=a.target_only_factor,
                       band=not a.no_band, real_wall_seconds=a.real_wall_seconds, calibration=a.calibration,
                       limit=a.limit, pipeline=None if a.pipeline is None else a.pipeline == "on",
                       samples_per_question=a.samples_per_question,
                       command="python -m atts.sim " + " ".join(argv))
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


def main_fit_cpu(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m atts.sim fit-cpu",
                                 description="Fit a linear hardware profile from testbed runs' request timings.")
    ap.add_argument("runs", nargs="+", help="atts run directories (one per load level)")
    ap.add_argument("--kv-capacity-tokens", type=int, action="append", default=[], metavar="N",
                    help="draft then target KV capacity in tokens (SGLang's max_total_num_tokens)")
    ap.add_argument("--output", required=True, help="the profile to write (YAML)")
    a = ap.parse_args(argv)
    for d in a.runs:
        if not (Path(d) / "samples").is_dir():
            print(f"atts simulate fit-cpu: {d}: not an atts run directory", file=sys.stderr)
            return 2
    kv = dict(zip(("draft", "target"), a.kv_capacity_tokens))
    prof = fit_linear_profile(a.runs, kv)
    Path(a.output).write_text(yaml.safe_dump(prof, sort_keys=False))
    print(yaml.safe_dump(prof, sort_keys=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fit-cpu":
        return main_fit_cpu(argv[1:])
    return main_simulate(argv)


if __name__ == "__main__":
    sys.exit(main())
