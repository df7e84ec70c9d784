"""The ``atts`` command.

    atts run --config CFG          calibrate (if the calibration file is missing) and
                                   evaluate, on one set of servers; prints the summary
    atts calibrate --config CFG    = python -m atts.calibrate   (atts.commands.calibrate)
    atts evaluate --config CFG     = python -m atts.evaluate    (atts.commands.evaluate)
    atts servers start|stop ...    (atts.commands.servers)
    atts compare --config CFG --policies a,b --output DIR     (atts.commands.compare)
    atts bench --config CFG --output DIR                      (atts.commands.bench)
    atts report RUN_DIR [RUN_DIR ...]                         (atts.analysis.report)
    atts grade DIR --dataset NAME --samples-per-question K    = python -m atts.compute_accuracy
    atts reextract RUN_DIR                                    = python -m atts.reextract

    run, evaluate, calibrate, compare and bench take --max-in-flight N: at most N samples
    at once (the config key max_in_flight; it does not change the run's identity)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from atts import DISTRIBUTION, __version__
from atts.commands.calibrate import calibrate_async, describe, policy_params
from atts.commands.evaluate import add_eval_args, config_from_args, evaluate_async, format_summary, preflight
from atts.errors import UserError, run_guarded
from atts.method.policies import POLICIES
from atts.runtime.session import Session


def _run(args) -> int:
    def body():
        cfg = config_from_args(args)
        cal_path = Path(args.calibration) if args.calibration else cfg.calibration_path
        needs_cal = POLICIES[cfg.policy.name].needs_calibration
        calibrating = needs_cal and (args.recalibrate or not cal_path.exists())
        if not calibrating:
            preflight(cfg, cal_path, args.force)

        async def go():
            async with Session(cfg) as session:
                if calibrating:
                    cal = await calibrate_async(cfg, session.roles, progress=not args.no_progress)
                    cal.save(cal_path)
                    print(describe(cal, policy_params(cfg).alpha), file=sys.stderr)
                return await evaluate_async(cfg, session.roles, calibration=cal_path, force=args.force,
                                            progress=not args.no_progress, command=sys.argv)

        s = asyncio.run(go())
        print(f"summary ({Path(cfg.output_dir) / 'summary.json'}):")
        print(format_summary(s))
        return 0 if s["n_failed"] == 0 else 1

    return run_guarded(body)


# subcommand -> module whose main(argv) implements it
SUBCOMMANDS = {
    "calibrate": "commands.calibrate", "evaluate": "commands.evaluate", "servers": "commands.servers",
    "compare": "commands.compare", "bench": "commands.bench", "report": "analysis.report", "grade": "analysis.grade",
    "reextract": "analysis.reextract",
}


# ---- --max-in-flight (issue 12 item 7) -------------------------------------------------
MAX_IN_FLIGHT_COMMANDS = ("run", "evaluate", "calibrate", "compare", "bench")


def max_in_flight_as_set(argv: list[str]) -> list[str]:
    """``--max-in-flight N`` (or ``=N``) of the commands that run samples, as the config
    override ``--set max_in_flight=N``; UserError unless N is a positive integer."""
    if not argv or argv[0] not in MAX_IN_FLIGHT_COMMANDS:
        return argv
    out, i = [argv[0]], 1
    while i < len(argv):
        a = argv[i]
        if a == "--max-in-flight" or a.startswith("--max-in-flight="):
            v = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            if not v.isdigit() or int(v) <= 0:
                raise UserError(f"--max-in-flight: expected a positive integer, got {v!r}")
            out += ["--set", f"max_in_flight={int(v)}"]
        else:
            out.append(a)
            i += 1
    return out
# ---- end --max-in-flight ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = max_in_flight_as_set(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)  # the guard's one line (atts.errors.run_guarded)
        return e.exit_code
    ap = argparse.ArgumentParser(prog="atts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"atts {__version__} ({DISTRIBUTION})")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="calibrate if needed, then evaluate, on one set of servers")
    add_eval_args(r)
    r.add_argument("--recalibrate", action="store_true", help="calibrate even if the file exists")
    for name, module in SUBCOMMANDS.items():
        sub.add_parser(name, add_help=False, help=f"see atts {name} --help")
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(f"atts.{SUBCOMMANDS[argv[0]]}").main(argv[1:])
    args = ap.parse_args(argv)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
