"""The ``atts`` command: the one argument parser of the package.

Every subcommand's work is a function in `atts.commands` or `atts.analysis` that takes
the parsed arguments (``command(args)``); this module builds the parsers (each with its
description, every flag's help, the choices and an example) and dispatches.
``python -m atts``, ``python -m atts.calibrate`` (``.evaluate``, ``.reextract``,
``.judge``, ``.compute_accuracy``) and ``python -m atts.commands.soak`` all land here.
`tests/unit/test_cli_help.py` fails if any other module under ``atts/`` imports
argparse.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import typing
from pathlib import Path

import yaml

from atts import DISTRIBUTION, __version__
from atts.analysis import export as export_cmd
from atts.analysis import grade, judge, reextract, report, tracking
from atts.api import run_config_async
from atts.commands import bench, calibrate, compare, evaluate, servers, soak
from atts.config import RunConfig, load_config, with_overrides
from atts.errors import run_guarded
from atts.sim import __main__ as sim_main
from atts.sim import command as sim_command
from atts.sim.schedules import SCHEDULES as SIM_SCHEDULES
from atts.method.conformal import GROUPINGS
from atts.method.policies import POLICIES
from atts.method.policies.atts import ATTSParams
from atts.serving.spec import DEFAULT_HOST
from atts.tasks.datasets import DATASETS, PRESETS

EXAMPLE_CONFIG = "configs/testbed.yaml"


# ----------------------------------------------------------------------------- choices, as help text


def first_sentence(doc: str | None, width: int = 88) -> str:
    """The first sentence of a docstring, on one line, cut to ``width`` characters."""
    text = " ".join((doc or "").split())
    end = text.find(". ")
    text = text if end < 0 else text[:end + 1]
    return text if len(text) <= width else text[:text.rfind(" ", 0, width - 3)] + " ..."


def policies_help() -> str:
    width = max(map(len, POLICIES))
    lines = [f"  {name:{width}s}  {first_sentence(cls.__doc__)}"
             + ("  [calibrated]" if cls.needs_calibration else "") for name, cls in sorted(POLICIES.items())]
    return "policies (policy.name, --policy):\n" + "\n".join(lines)


def datasets_help() -> str:
    names = ", ".join(sorted(DATASETS))
    presets = ", ".join(sorted(PRESETS))
    return (f"datasets (dataset.name): {names}\n"
            f"presets (dataset.preset): {presets}\n"
            "  or any hub dataset / local JSONL: dataset.path, dataset.problem_field, dataset.answer_field,\n"
            "  dataset.choices_field, dataset.revision (docs/architecture.md, 'Add a dataset')")


def modes_help() -> str:
    hints = typing.get_type_hints(ATTSParams)
    modes = ", ".join(typing.get_args(hints["mode"]))
    return (f"groupings (policy.grouping): {', '.join(GROUPINGS)}\n"
            f"modes (policy.mode, atts): {modes}")


def epilog(*examples: str, choices: bool = False) -> str:
    parts = ["examples:\n" + "\n".join(f"  {e}" for e in examples)]
    if choices:
        parts += [policies_help(), datasets_help(), modes_help()]
    return "\n\n".join(parts)


FMT = argparse.RawDescriptionHelpFormatter


# ----------------------------------------------------------------------------- shared flags


def _positive_int(v: str) -> int:
    if not v.isdigit() or int(v) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return int(v)


class _MaxInFlight(argparse.Action):
    """``--max-in-flight N``: the config override ``max_in_flight=N`` (it does not change
    the run's identity)."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.set = [*(namespace.set or []), f"max_in_flight={value}"]


def add_max_in_flight(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-in-flight", type=_positive_int, action=_MaxInFlight, metavar="N",
                   help="at most N samples at once (bounds KV-cache use; the config key max_in_flight)")


def add_config_args(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    p.add_argument("--config", required=required, default=default, metavar="CFG",
                   help="YAML run config (may `extends:` another)" + (f" (default {default})" if default else ""))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set policy.grouping=marginal (repeatable; YAML values)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (after extends, --set and flags) as YAML and exit")


def add_output_dir(p: argparse.ArgumentParser, help_: str, dest: str = "output", required: bool = False,
                   default: str | None = None) -> None:
    """One spelling across commands: ``--output-dir``; ``--output`` stays as an alias."""
    p.add_argument("--output-dir", "--output", dest=dest, required=required, default=default, metavar="DIR",
                   help=help_ + " (--output: the old spelling)")


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_wandb_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("experiment tracking (needs the wandb package; WANDB_MODE=offline works offline)")
    g.add_argument("--wandb", metavar="PROJECT", help="log the run's summary, per-turn takeover rates and accuracy "
                                                      "(and the report, where there is one) to this W&B project")
    g.add_argument("--wandb-name", metavar="NAME", help="W&B run name (default: the run directory's name)")
    g.add_argument("--wandb-tags", metavar="A,B", help="comma-separated W&B tags")


def add_eval_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--policy", choices=sorted(POLICIES), metavar="NAME",
                   help="policy (default: the config's); one of the policies below")
    p.add_argument("--calibration", metavar="PATH",
                   help="calibration file (default: calibration.path, else <output dir>/calibration.json)")
    add_output_dir(p, "run directory: manifest.json, samples/, summary.json (default: the config's output_dir)",
                   dest="output_dir")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N questions")
    p.add_argument("--samples-per-question", "-K", type=int, metavar="K", help="samples per question")
    p.add_argument("--alpha", type=float, help="conformal level of a calibrated policy (takeover rate target)")
    p.add_argument("--force", action="store_true", help="accept a mismatched calibration or output directory")
    add_max_in_flight(p)
    add_progress(p)
    add_wandb_args(p)


def add_llm_args(p: argparse.ArgumentParser, max_tokens: int = 64) -> None:
    g = p.add_argument_group("LLM (any OpenAI-compatible API: OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL)")
    g.add_argument("--model", help="model name (default: $OPENAI_MODEL)")
    g.add_argument("--base-url", help="OpenAI-compatible base URL (default: $OPENAI_BASE_URL)")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight at most (default 8)")
    g.add_argument("--max-tokens", type=int, default=max_tokens, help=f"reply tokens (default {max_tokens})")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    g.add_argument("--retries", type=int, default=3, help="retries per request (default 3)")
    g.add_argument("--dry-run", action="store_true", help="send nothing, write nothing; show what would be done")
    g.add_argument("--force", action="store_true", help="redo items already done by this model")
    add_progress(p)


def resolved_config(args) -> RunConfig:
    """The config a command would run: its file (after ``extends``), ``--set`` and the flags."""
    if hasattr(args, "policy") and hasattr(args, "output_dir"):  # run / evaluate
        return evaluate.config_from_args(args)
    flags = {k: getattr(args, k) for k in ("alpha", "limit", "samples_per_question") if getattr(args, k, None)}
    if args.cmd == "calibrate":
        flags.pop("limit", None)  # calibrate's --limit counts calibration questions, not dataset.limit
    return with_overrides(load_config(args.config), sets=args.set, **flags)


def print_config(args) -> int:
    print(yaml.safe_dump(resolved_config(args).to_dict(), sort_keys=False, allow_unicode=True), end="")
    return 0


# ----------------------------------------------------------------------------- run


def run_command(args) -> int:
    """``atts run``: calibrate if needed, then evaluate, on one set of servers."""
    tracking.check_available(args)
    cfg = evaluate.config_from_args(args)
    s = asyncio.run(run_config_async(cfg, calibration=args.calibration, recalibrate=args.recalibrate,
                                     force=args.force, progress=not args.no_progress, command=sys.argv))
    print(f"summary ({Path(cfg.output_dir) / 'summary.json'}):")
    print(evaluate.format_summary(s))
    tracking.log_from_args(args, cfg.output_dir)
    return 0 if s["n_failed"] == 0 else 1


def evaluate_command(args) -> int:
    tracking.check_available(args)
    rc = evaluate.command(args)
    if rc in (0, 1):  # 1: some samples failed, the summary is written all the same
        tracking.log_from_args(args, evaluate.config_from_args(args).output_dir)
    return rc


def report_command(args) -> int:
    tracking.check_available(args)
    rc = report.command(args)
    if rc == 0:
        out = Path(args.output) if args.output else report.default_output([Path(d) for d in args.runs])
        for d in args.runs:
            tracking.log_from_args(args, d, report_dir=out)
    return rc


def export_command(args) -> int:
    tracking.check_available(args)
    rc = export_cmd.command(args)
    tracking.log_from_args(args, args.run_dir)
    return rc


# ----------------------------------------------------------------------------- parsers


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="atts", formatter_class=FMT,
        description="Asynchronous test-time scaling: a draft model writes reasoning chunks, a target model scores "
                    "them, and a conformal test decides when the target takes over.",
        epilog=epilog(f"atts run --config {EXAMPLE_CONFIG}",
                      f"atts run --config {EXAMPLE_CONFIG} --policy draft_only --limit 20 --output-dir results/d",
                      "atts report results/testbed",
                      "atts export results/testbed --format lm-eval",
                      "atts CMD --help   (every command lists its flags, choices and an example)"))
    ap.add_argument("--version", action="version", version=f"atts {__version__} ({DISTRIBUTION})")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name: str, fn, help_: str, description: str, examples: list[str], choices: bool = False):
        p = sub.add_parser(name, help=help_, description=description, formatter_class=FMT,
                           epilog=epilog(*examples, choices=choices))
        p.set_defaults(fn=fn)
        return p

    p = add("run", run_command, "calibrate if needed, then evaluate, on one set of servers",
            "Start (or reach) the draft and target servers once, calibrate when the policy needs a calibration "
            "file that is missing, evaluate every sample and print the summary. A rerun resumes: it runs exactly "
            "the missing samples.",
            [f"atts run --config {EXAMPLE_CONFIG}",
             f"atts run --config {EXAMPLE_CONFIG} --policy atts --alpha 0.5 --limit 50 --output-dir results/a05",
             f"atts run --config {EXAMPLE_CONFIG} --set policy.grouping=marginal --print-config"], choices=True)
    add_eval_args(p)
    p.add_argument("--recalibrate", action="store_true", help="calibrate even if the calibration file exists")

    p = add("calibrate", calibrate.command, "collect the calibration PPLs and write the calibration file",
            calibrate.__doc__.split("\n\n")[1].strip(),
            [f"atts calibrate --config {EXAMPLE_CONFIG}",
             f"atts calibrate --config {EXAMPLE_CONFIG} --limit 40 --calibration-file results/cal.json"],
            choices=True)
    add_config_args(p)
    p.add_argument("--calibration-file", "--output", dest="output", metavar="PATH",
                   help="calibration file to write (default: calibration.path, else <output_dir>/calibration.json; "
                        "--output: the old spelling)")
    p.add_argument("--limit", type=int, metavar="N", help="first N calibration questions")
    p.add_argument("--alpha", type=float, help="alpha shown in the printed thresholds")
    add_max_in_flight(p)
    add_progress(p)

    p = add("evaluate", evaluate_command, "evaluate a policy with an existing calibration",
            "Run every sample of the evaluated questions under the chosen policy; writes manifest.json, one "
            "record per sample and summary.json. A rerun resumes.",
            [f"atts evaluate --config {EXAMPLE_CONFIG} --policy target_only --limit 20",
             f"atts evaluate --config {EXAMPLE_CONFIG} --calibration results/cal.json --alpha 0.3"], choices=True)
    add_eval_args(p)

    p = add("servers", servers.command, "start or stop the draft and target SGLang servers",
            servers.__doc__.strip(),
            [f"atts servers start --config {EXAMPLE_CONFIG}",
             "atts servers start --draft-model M1 --target-model M2 --draft-gpus 0 --target-gpus 1,2 --target-tp 2",
             "atts servers stop"])
    ss = p.add_subparsers(dest="cmd", required=True, metavar="ACTION")
    st = ss.add_parser("start", help="start both servers in the background and print their URLs", formatter_class=FMT,
                       description="Start both servers in the background, wait until they answer, print their URLs.",
                       epilog=epilog(f"atts servers start --config {EXAMPLE_CONFIG} --log-dir results/logs"))
    st.add_argument("--config", metavar="CFG", help="a YAML config (its draft/target sections)")
    st.add_argument("--draft-model", metavar="PATH", help="draft model (without --config)")
    st.add_argument("--target-model", metavar="PATH", help="target model (without --config)")
    st.add_argument("--draft-gpus", help="CUDA_VISIBLE_DEVICES for the draft, e.g. 0")
    st.add_argument("--target-gpus", help="CUDA_VISIBLE_DEVICES for the target, e.g. 1,2")
    st.add_argument("--draft-tp", type=int, default=1, help="draft tensor parallelism (default 1)")
    st.add_argument("--target-tp", type=int, default=1, help="target tensor parallelism (default 1)")
    st.add_argument("--mem-fraction-static", type=float, default=None, help="SGLang's static memory fraction")
    st.add_argument("--draft-port", type=int, default=None, help="draft port (default: a free one)")
    st.add_argument("--target-port", type=int, default=None, help="target port (default: a free one)")
    st.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    st.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if nvidia-smi finds one")
    st.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for both to answer (default 600)")
    sp = ss.add_parser("stop", help="stop the servers recorded in the log directory", formatter_class=FMT,
                       description="Stop the servers whose pid files are in the log directory.",
                       epilog=epilog("atts servers stop --log-dir results/logs"))
    for q in (st, sp):
        q.add_argument("--log-dir", default="results/logs", help="server logs and pid files (default results/logs)")

    p = add("compare", compare.command, "run several policies side by side and write one table",
            compare.__doc__.split("\n\n", 1)[1].strip(),
            [f"atts compare --config {EXAMPLE_CONFIG} --policies draft_only,target_only,atts --output-dir results/cmp",
             f"atts compare --config {EXAMPLE_CONFIG} --policies a3=atts,a7=atts --param a3.alpha=0.3 "
             "--param a7.alpha=0.7 --output-dir results/alphas"], choices=True)
    add_config_args(p)
    p.add_argument("--policies", required=True, metavar="A,B,LABEL=POLICY",
                   help="comma-separated policy names or label=policy (policies below)")
    add_output_dir(p, "directory for compare.json/.md/.png and one run per policy", required=True)
    p.add_argument("--limit", type=int, metavar="N", help="first N questions")
    p.add_argument("--samples-per-question", "-K", type=int, metavar="K", help="samples per question")
    p.add_argument("--alpha", type=float, help="alpha for every policy that has one")
    p.add_argument("--param", action="append", default=[], metavar="LABEL.KEY=VALUE",
                   help="policy parameter of one run, e.g. --param specreason.threshold=9 (repeatable)")
    add_max_in_flight(p)
    add_progress(p)

    p = add("bench", bench.command, "speed benchmark: the policies' rows and the orchestrator's own cost",
            bench.__doc__.split("\n\n", 1)[1].strip(),
            [f"atts bench --config configs/bench_testbed.yaml --output-dir results/bench",
             f"atts bench --config configs/bench_testbed.yaml --rows atts,target_only --levels '' "
             "--output-dir results/bench"])
    add_config_args(p)
    add_output_dir(p, "directory for bench.json, bench.md and the rows' samples", required=True)
    p.add_argument("--limit", type=int, metavar="N", help="first N questions (default: the config's)")
    p.add_argument("--samples-per-question", "-K", type=int, metavar="K", help="samples per question")
    p.add_argument("--rows", default=",".join(bench.ROW_ORDER), metavar="A,B",
                   help=f"comma-separated subset of {', '.join(bench.ROW_ORDER)} (default: all)")
    p.add_argument("--levels", default=",".join(map(str, bench.DEFAULT_LEVELS)), metavar="N,M",
                   help="orchestrator concurrency levels (default %(default)s; empty: skip)")
    p.add_argument("--max-in-flight", default="", metavar="N[,N...]",
                   help="run every row at each cap on samples in flight, e.g. 4,64 (default: every sample at once)")
    p.add_argument("--orchestrator-max-turns", type=int, default=2, help="turn cap of the orchestrator runs")
    p.add_argument("--calibration", metavar="PATH",
                   help="calibration file (default: calibration.path or DIR/calibration.json)")
    p.add_argument("--fresh", action="store_true", help="rerun rows already in DIR/bench.json")
    add_progress(p)

    p = add("soak", soak.command, "soak test: faults, high concurrency, bounded time",
            soak.__doc__.split("\n\n", 1)[1].strip(),
            [f"atts soak --config {EXAMPLE_CONFIG} --duration 600 --fault-rate 0.1 --concurrency 64 "
             "--output-dir results/soak"], choices=True)
    add_config_args(p, required=False, default=EXAMPLE_CONFIG)
    add_output_dir(p, "directory for the rounds and soak.json (default results/soak)", default="results/soak")
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--fault-rate", type=float, default=0.1, help="share of requests given a fault (default 0.1)")
    p.add_argument("--concurrency", type=int, default=64, help="max in-flight requests per role (default 64)")
    p.add_argument("--samples-per-question", "-K", type=int, default=4, help="samples per question (default 4)")
    p.add_argument("--round-questions", type=int, default=128,
                   help="questions per round; a round's samples all start at once, so the samples in flight are "
                        "round-questions x samples-per-question (default 128 x 4 = 512)")
    p.add_argument("--no-kills", dest="kills", action="store_false",
                   help="skip the kill -9 of the target (at 1/3) and the draft (at 2/3) server; the kills happen "
                        "only to servers the soak launched")
    p.add_argument("--baseline", action="store_true",
                   help="first run a fault-free phase of the same duration (OUTPUT/baseline) and report the "
                        "throughput against it")
    p.add_argument("--policy", default="atts", choices=sorted(POLICIES), metavar="NAME",
                   help="policy (default atts); one of the policies below")
    p.add_argument("--calibration", metavar="PATH", help="an existing calibration file (default: make one, "
                                                         "without faults)")
    p.add_argument("--calibration-limit", type=int, default=40, help="calibration questions (default 40)")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, s (default 30)")
    p.add_argument("--slow-s", type=float, default=35.0, help="how long a `slow` fault holds a request, s")
    p.add_argument("--retries", type=int, default=8, help="client retries per request (default 8)")
    p.add_argument("--seed", type=int, default=0, help="fault schedule seed")

    p = add("simulate", sim_main.simulate_command, "project GPU wall time and throughput from traces",
            sim_main.__doc__.split("\n\n")[0].strip(),
            ["atts simulate --traces ../shared/reference/atts_traces/traces.jsonl.gz --hardware "
             "configs/hardware/h100_r1llama8b_qwq32b.yaml --schedule research --output-dir results/sim"])
    p.add_argument("--traces", required=True, help="an atts run dir, a .jsonl(.gz) traces file, or problem_XXXX.json dir")
    p.add_argument("--hardware", required=True, help="hardware profile (configs/hardware/*.yaml)")
    p.add_argument("--schedule", required=True, choices=SIM_SCHEDULES, help="one of: " + ", ".join(SIM_SCHEDULES))
    p.add_argument("--max-in-flight", type=int, help="samples (and requests per role) in flight (default: all)")
    p.add_argument("--prompts", choices=("shared", "research"),
                   help="scoring prompts: shared prefix with generation (the project's) or research-style text")
    p.add_argument("--draft-tokenizer", help="tokenizer dir of the draft (exact token counts)")
    p.add_argument("--target-tokenizer", help="tokenizer dir of the target (exact token counts)")
    p.add_argument("--chars-per-token", type=float, default=sim_command.DEFAULT_CHARS_PER_TOKEN,
                   help=f"estimate without a tokenizer (default {sim_command.DEFAULT_CHARS_PER_TOKEN})")
    p.add_argument("--target-only-factor", type=float, default=1.0,
                   help="target_only length = factor x each sample's kept tokens (default 1.0)")
    p.add_argument("--real-wall-seconds", type=float, help="the recorded run's wall time, to report the error")
    p.add_argument("--calibration", help="calibration (.json atts file or .npy PPL array) if not beside the traces")
    p.add_argument("--pipeline", choices=("on", "off"), help="ATTS pipelining (default: the recorded run's, else on)")
    p.add_argument("--limit", type=int, help="first N questions only")
    p.add_argument("--samples-per-question", type=int, default=16, help="problem_XXXX.json dirs: repeats per question")
    p.add_argument("--no-band", action="store_true", help="skip the sensitivity band (two more replays)")
    add_output_dir(p, "directory for simulate.json, simulate.md, simulate.png", required=True)

    p = add("simulate-fit", sim_main.fit_cpu_command, "fit a linear (CPU testbed) hardware profile",
            "Fit a linear hardware profile: --probe measures the config's servers term by term (decode "
            "iterations at batch 1/8/32, prefill slope, request overhead); otherwise a regression on testbed "
            "runs' own request timings (docs/simulation.md says why the probe is the one to use).",
            ["atts simulate-fit --probe --config configs/testbed.yaml --output results/cpu_probe.yaml",
             "atts simulate-fit results/r16 results/r64 --output results/cpu_fit.yaml"])
    p.add_argument("runs", nargs="*", help="atts run directories (one per load level); not with --probe")
    p.add_argument("--probe", action="store_true", help="probe the servers of --config (launched if launch: true)")
    add_config_args(p, required=False)
    p.add_argument("--kv-capacity-tokens", type=int, action="append", default=[], metavar="N",
                   help="draft then target KV capacity in tokens (SGLang's max_total_num_tokens)")
    p.add_argument("--output", required=True, help="the profile to write (YAML)")

    p = add("report", report_command, "Markdown/HTML report with plots of one or more runs",
            report.__doc__.split("\n\n", 1)[1].strip(),
            ["atts report results/testbed",
             "atts report results/cmp/draft_only results/cmp/atts --output-dir results/cmp/report"])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (one per policy to compare)")
    add_output_dir(p, "report directory (default: RUN_DIR/report, or <common parent>/report)")
    p.add_argument("--legacy", action="append", default=[], metavar="GRADE.json",
                   help="an `atts grade --output` file to add to the accuracy table (repeatable)")
    p.add_argument("--timeline-samples", type=int, default=6, help="samples shown in each timeline (default 6)")
    p.add_argument("--no-grade", action="store_true", help="skip regrading (use summary.json only)")
    add_wandb_args(p)

    p = add("export", export_command, "write a run in lm-evaluation-harness or flat JSONL format",
            export_cmd.__doc__.split("\n\n", 1)[1].strip(),
            ["atts export results/testbed --format lm-eval --output-dir results/testbed/lm_eval",
             "atts export results/testbed --format jsonl"])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--format", required=True, choices=export_cmd.FORMATS, help="lm-eval or jsonl")
    add_output_dir(p, "where to write (default RUN_DIR/export)")
    add_wandb_args(p)

    p = add("grade", grade.command, "grade a run or the research code's results (pass@1, maj@K, pass@K)",
            grade.__doc__.split("\n\n", 1)[1].strip(),
            ["atts grade results/testbed", "atts grade results/testbed --answer-field llm --output grade.json",
             "atts grade research/problems --dataset aime24 -K 16"])
    p.add_argument("dir", metavar="DIR", help="an atts run directory, a directory of problem_XXXX.json, or a traces "
                                              ".jsonl(.gz)")
    p.add_argument("--dataset", choices=sorted(DATASETS), metavar="NAME",
                   help=f"dataset of the gold answers (default: the run's own); one of {', '.join(sorted(DATASETS))}")
    p.add_argument("--samples-per-question", "-K", type=int, help="K (default: the run's own)")
    p.add_argument("--answer-field", help="answer to grade (default: answer for our runs, final_answer for research)")
    p.add_argument("--output", metavar="FILE.json", help="write the result JSON here (a file, not a directory)")
    p.add_argument("--per-sample", action="store_true", help="include every sample's answers and verdicts")
    p.add_argument("--data-dir", help="local dataset directory (default: $ATTS_DATA_DIR or ../shared/datasets)")
    p.add_argument("--workers", type=int, default=2, help="grading processes (default 2)")

    p = add("reextract", reextract.command, "re-extract every sample's final answer with an LLM",
            reextract.__doc__.split("\n\n", 1)[1].strip(),
            ["OPENAI_MODEL=gpt-4o-mini atts reextract results/testbed --dry-run",
             "atts reextract results/testbed --model M --base-url http://127.0.0.1:8000/v1 --judge"])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    p.add_argument("--field", default="llm", help="answers.<field> to write (default: llm)")
    p.add_argument("--max-chars", type=int, default=4000, help="reasoning characters sent (its tail; default 4000)")
    p.add_argument("--judge", action="store_true", help="then judge the re-extracted answers (atts judge)")
    p.add_argument("--judge-max-tokens", type=int, default=8, help="judge reply tokens (default 8)")
    add_llm_args(p)

    p = add("judge", judge.command, "LLM judge (the research code's anyone_check): judge pass@k",
            judge.__doc__.split("\n\n", 1)[1].strip(),
            ["atts judge results/testbed --dry-run", "atts judge results/testbed --answer-field llm --model M"])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory")
    p.add_argument("--answer-field", default="answer", help="answers judged: answer (ours) or an answers.<field>")
    add_llm_args(p, max_tokens=8)
    return ap




def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["atts", *argv])  # as typed, whichever entry point: for records
    if getattr(args, "print_config", False):
        return run_guarded(lambda: print_config(args))
    if args.fn in (run_command, evaluate_command, report_command, export_command):
        return run_guarded(lambda: args.fn(args))
    return args.fn(args)  # the commands' own guard maps their errors


if __name__ == "__main__":
    sys.exit(main())
