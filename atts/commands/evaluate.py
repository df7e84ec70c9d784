"""``python -m atts.evaluate --config CFG [--policy NAME] [--calibration PATH]
[--output-dir DIR] [--limit N] [--samples-per-question K] [--alpha A] [--force]``

Runs every sample of the evaluated questions concurrently under the chosen policy and
writes ``manifest.json``, one record per sample and ``summary.json`` to the output
directory. Flags override the config. A rerun of the same command resumes: it runs
exactly the missing samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
import time
from pathlib import Path

from atts.commands.calibrate import calibration_meta
from atts.config import RunConfig, identity_dict, load_config, stable_hash, with_overrides
from atts.errors import CalibrationError, run_guarded
from atts.method.conformal import CalibrationFile, ConformalGate
from atts.method.policies import make_policy
from atts.runtime.context import ScoringPrompt, scoring_prompt_named
from atts.runtime.progress import bar
from atts.runtime.runner import Role, run_all
from atts.runtime.provenance import git_state
from atts.runtime.schedule import Schedule, schedule_named
from atts.runtime.session import Session, chunking_of
from atts.runtime.store import RunStore, versions
from atts.runtime.seed_support import seed_support
from atts.runtime.summary import budget_accuracy, summarize
from atts.tasks.datasets import dataset_source, load_from_config
from atts.tasks.grading import Grader
from atts.tasks.chunk_replay import short_chunk_warning

def run_hash(cfg: RunConfig, calibration_hash: str | None) -> str:
    """What a run is: every config field but the operational ones (declared on the fields,
    `atts.config.operational`), plus the calibration file's hash."""
    return stable_hash(identity_dict(cfg) | {"calibration_hash": calibration_hash})


def load_gate(cfg: RunConfig, path: Path | None, force: bool,
              scoring_prompt: str = "shared") -> tuple[ConformalGate | None, CalibrationFile | None]:
    policy_cls = make_policy(cfg.policy.name, cfg.policy.params).__class__
    if not policy_cls.needs_calibration:
        return None, None
    p = path or cfg.calibration_path
    cal = CalibrationFile.load(p)
    if not force:
        cal.check_compatible(calibration_meta(cfg, scoring_prompt), p)
        grouping = getattr(cfg.policy.params, "grouping", cal.grouping)
        if grouping != cal.grouping:
            raise CalibrationError(f"{p} has grouping {cal.grouping!r}, the policy wants {grouping!r} (use --force to override)")
    alpha = cfg.policy.params.alpha
    if force and cal.grouping == "per_turn" and cal.alpha != alpha:
        cal = dataclasses.replace(cal, alpha=alpha)
    return cal.gate(alpha), cal


async def evaluate_async(cfg: RunConfig, roles: dict[str, Role], *, calibration: Path | None = None,
                         force: bool = False, progress: bool = True, command: list[str] | None = None,
                         schedule: Schedule | str = "concurrent", scoring_prompt: ScoringPrompt | str = "shared") -> dict:
    """``schedule`` and ``scoring_prompt``: strategies (`atts.runtime.schedule`,
    `atts.runtime.context.ScoringPrompt`) or their names; a named "concurrent" schedule
    takes the config's ``max_in_flight``. Other values than the defaults only reproduce
    the research code's costs (atts.commands.bench)."""
    if isinstance(schedule, str):
        schedule = schedule_named(schedule, cfg.max_in_flight)
    if isinstance(scoring_prompt, str):
        scoring_prompt = scoring_prompt_named(scoring_prompt)
    gate, cal = load_gate(cfg, calibration, force, scoring_prompt.name)
    policy = make_policy(cfg.policy.name, cfg.policy.params, gate)
    questions = load_from_config(cfg.dataset)
    check_held_out(cal, questions, calibration or cfg.calibration_path)
    k = cfg.samples_per_question
    store = RunStore(cfg.output_dir)
    seeds = seed_support(cfg)  # issue 13 item 3
    manifest = {
        "config": cfg.to_dict(public=True), "config_path": cfg.source_path, "command": command,
        "versions": versions(), "calibration": {"path": str(calibration or cfg.calibration_path), "hash": cal.hash}
        | calibration_record(cal) if cal else None, "questions": [q.id for q in questions], "samples_per_question": k,
        "seeds_honoured": seeds["seeds_honoured"], "seeds": seeds,
        "dataset_source": dataset_source(cfg.dataset), "git": git_state(),  # issue 14: provenance
    }
    store.open(run_hash(cfg, cal.hash if cal else None), manifest, force=force)
    t0 = time.perf_counter()
    with Grader(cfg.grading_workers) as grader:
        chunking = dataclasses.replace(chunking_of(cfg), scoring_prompt=scoring_prompt)
        stats = await run_all(policy, questions, k, roles, chunking, store, grader, bar(policy.name, progress),
                              schedule=schedule)
    wall = time.perf_counter() - t0
    wanted = {f"q{q.index:05d}-r{r:03d}" for q in questions for r in range(k)}
    records = [rec for key, rec in store.completed().items() if key in wanted]
    summary = summarize(records, policy=cfg.policy.name, dataset=cfg.dataset.name, split=cfg.dataset.split,
                        n_questions=len(questions), samples_per_question=k,
                        alpha=getattr(cfg.policy.params, "alpha", None), wall_seconds=wall, ran=stats["ran"])
    summary["samples_skipped_as_done"] = stats["skipped"]
    summary["calibration"] = calibration_record(cal) if cal else None  # issue 13 item 2
    summary["seeds_honoured"], summary["seeds_note"] = seeds["seeds_honoured"], seeds["reason"]  # issue 13 item 3
    if getattr(cfg.policy.params, "alpha", None) is not None:  # issue 13 item 7
        summary["budget_accuracy"] = budget_accuracy(records, cfg.policy.params.alpha)
    summary["engine_counters"] = {r.name: dict(r.engine.counters) for r in roles.values()}
    if w := short_chunk_warning(records, cfg.chunking.max_tokens_per_chunk, cfg.chunking.max_turns):  # issue 13 item 1
        summary["warnings"] = [w]; print(f"atts: warning: {w}", file=sys.stderr)  # noqa: E702
    store.write("summary.json", summary)
    return summary


def calibration_record(cal: CalibrationFile) -> dict:
    """What the manifest and summary say about the calibration's questions."""
    return {"split": cal.meta.get("split"), "calibrated_on_test": bool(cal.meta.get("calibrated_on_test")),
            "n_questions": cal.meta.get("n_questions")}


def check_held_out(cal: CalibrationFile | None, questions, path) -> None:
    """Refuse to evaluate questions the calibration used (its ``meta.questions``) unless
    it was made on the evaluated questions by choice (``calibration.split: null``,
    recorded as ``calibrated_on_test``): the conformal guarantee needs exchangeable,
    held-out calibration scores. --force does not lift this."""
    if cal is None or cal.meta.get("calibrated_on_test"):
        return
    overlap = sorted(set(cal.meta.get("questions") or ()) & {q.id for q in questions})
    if overlap:
        raise CalibrationError(f"{path} was calibrated on {len(overlap)} of the evaluated questions (e.g. "
                               f"{overlap[0]!r}); calibrate on a held-out split, or set calibration.split: null "
                               "to calibrate on the evaluated questions on purpose")


def preflight(cfg: RunConfig, calibration: Path | None, force: bool) -> None:
    """Everything that can be checked before servers start: dataset, calibration,
    output directory. Fails fast with a user error."""
    questions = load_from_config(cfg.dataset)
    _, cal = load_gate(cfg, calibration, force)
    check_held_out(cal, questions, calibration or cfg.calibration_path)
    RunStore(cfg.output_dir).check(run_hash(cfg, cal.hash if cal else None), force)


async def _main_async(cfg: RunConfig, calibration: Path | None, force: bool, progress: bool, command) -> dict:
    preflight(cfg, calibration, force)
    async with Session(cfg) as s:
        return await evaluate_async(cfg, s.roles, calibration=calibration, force=force, progress=progress,
                                    command=command)


SUMMARY_KEYS = ("policy", "dataset", "n_questions", "samples_per_question", "n_samples_completed", "n_failed",
                "pass@1", "maj@k", "pass@k", "alpha", "target_chunk_share", "wall_seconds", "samples_per_second",
                "latency_median", "latency_p90")


def format_summary(s: dict) -> str:
    lines = []
    for k in SUMMARY_KEYS:
        v, ci = s.get(k), s.get(f"{k}_ci")  # issue 13 item 6: the cluster-bootstrap interval, where there is one
        lines.append((f"  {k:22s} {v:.4f}" if isinstance(v, float) else f"  {k:22s} {v}")
                     + (f"  (95% [{ci[0]:.3f}, {ci[1]:.3f}])" if ci else ""))
    tr = s["takeover_rate"]
    if tr["n"]:
        lines.append(f"  {'takeover_rate':22s} {tr['rate']:.4f}  (95% [{tr['low']:.3f}, {tr['high']:.3f}], n={tr['n']}, "
                     f"{tr.get('interval', 'wilson')})")
        for t in s["takeover_rate_by_turn"]:
            lines.append(f"    turn {t['turn']:<3d} {t['rate']:.3f}  [{t['low']:.3f}, {t['high']:.3f}]  n={t['n']}")
    tok = s["tokens"]
    lines.append(f"  tokens                 draft {tok['draft']['generated']}, target {tok['target']['generated']} "
                 f"generated + {tok['target']['scored']} scored")
    return "\n".join(lines)


def config_from_args(args) -> RunConfig:
    return with_overrides(load_config(args.config), policy=args.policy, alpha=args.alpha,
                          samples_per_question=args.samples_per_question, limit=args.limit,
                          output_dir=args.output_dir, calibration=args.calibration, sets=args.set)


def command(args) -> int:
    """``atts evaluate`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        cfg = config_from_args(args)
        cal = Path(args.calibration) if args.calibration else None
        s = asyncio.run(_main_async(cfg, cal, args.force, not args.no_progress, sys.argv))
        print(f"summary ({Path(cfg.output_dir) / 'summary.json'}):")
        print(format_summary(s))
        return 0 if s["n_failed"] == 0 else 1

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["evaluate", *sys.argv[1:]]))
