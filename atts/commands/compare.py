"""``atts compare --config CFG --policies a,b,label=policy,... --output DIR [--limit N]
[--samples-per-question K] [--alpha A] [--set KEY=VALUE] [--param LABEL.KEY=VALUE]``

Runs several policies side by side and writes one table. The servers start once (or the
config's URLs are used) and every policy runs, one after another, on the same questions
and samples with the same per-request seeds (`atts.runner.request_seed`), each as a
normal resumable run in ``DIR/<label>/``. Seeds pair samples only where the engines
honour them (`atts.runtime.seed_support`; not SGLang on CPU): compare.json/.md say so
(``seeds_honoured``) and pair every policy with the first per question
(``paired_by_question``: mean accuracy difference, paired bootstrap interval, sign test). Calibrated policies share a calibration file
when their scores are the same quantity (``DIR/calibration-<kind>-<hash>.json``, made
once if missing). Then:
    DIR/compare.json   {"rows": [{name, policy, pass@1, maj@k, pass@k (each with its
                        <metric>_ci), takeover_rate, takeover_interval (clustered:
                        takeover_interval_kind), n_samples_completed, wall_seconds,
                        latency_median, latency_p90, target_token_share, tokens,
                        throughput ...}], ...}
    (the 95% intervals are summary.json's: a cluster bootstrap over questions; Wilson
    only where fewer than two questions made takeover decisions)
    DIR/compare.md     the same table in Markdown
    DIR/compare.png    accuracy versus median sample latency (and versus the target's
                       share of generated tokens)

A policy is named by its registry name, or ``label=name`` to run one policy twice with
different parameters; ``--param label.key=value`` sets that run's policy parameters
(``--set`` applies to every run and must not name ``policy.*`` keys). A rerun of the
same command resumes each run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
import time
from collections import Counter
from pathlib import Path

from atts.analysis.paired import paired_by_question, paired_markdown
from atts.analysis import figures
from atts.commands.calibrate import calibrate_async, calibration_meta, policy_params
from atts.commands.evaluate import evaluate_async
from atts.config import RunConfig, load_config, stable_hash, with_overrides
from atts.errors import ConfigError, run_guarded
from atts.method.policies import POLICIES
from atts.runtime.seed_support import seed_support
from atts.runtime.session import Session
from atts.runtime.store import RunStore, atomic_write_json, atomic_write_text
from atts.analysis.render import num, with_ci
from atts.records import COMPLETE

ROW_KEYS = ("name", "policy", "pass@1", "pass@1_ci", "maj@k", "maj@k_ci", "pass@k", "pass@k_ci", "takeover_rate",
            "takeover_interval", "takeover_interval_kind", "n_samples_completed", "wall_seconds",
            "latency_median", "latency_p90", "target_token_share")


@dataclasses.dataclass(frozen=True)
class Entry:
    label: str
    cfg: RunConfig


def parse_policies(spec: str) -> list[tuple[str, str]]:
    """'a,b,x=c' -> [(a, a), (b, b), (x, c)]: (label, policy name)."""

    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        label, _, name = item.partition("=") if "=" in item else (item, "", item)
        if name not in POLICIES:
            raise ConfigError(f"--policies: unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
        if not label.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"--policies: label {label!r} must be letters, digits, - and _")
        out.append((label, name))
    labels = [lab for lab, _ in out]
    if not out or len(set(labels)) != len(labels):
        raise ConfigError("--policies: give at least one policy, each label once")
    return out


def build_entries(args) -> tuple[RunConfig, list[Entry]]:
    """The base config (servers, output) and one config per compared run."""
    out = Path(args.output)
    for s in args.set:
        if s.startswith("policy."):
            raise ConfigError(f"--set {s}: policy parameters go in --param LABEL.KEY=VALUE")
    pols = parse_policies(args.policies)
    params: dict[str, list[str]] = {lab: [] for lab, _ in pols}
    for p in args.param:
        lab, _, kv = p.partition(".")
        if lab not in params or "=" not in kv:
            raise ConfigError(f"--param {p!r}: expected LABEL.KEY=VALUE with LABEL one of {', '.join(params)}")
        params[lab].append("policy." + kv)
    raw = load_config(args.config)
    common = dict(samples_per_question=args.samples_per_question, limit=args.limit)
    base = with_overrides(raw, output_dir=str(out), sets=args.set, **common)
    entries = []
    for lab, name in pols:
        cfg = with_overrides(raw, policy=name, alpha=args.alpha, output_dir=str(out / lab),
                             sets=list(args.set) + params[lab], **common)
        entries.append(Entry(lab, _with_calibration_path(cfg, out)))
    return base, entries


def _with_calibration_path(cfg: RunConfig, out: Path) -> RunConfig:
    """Calibrated runs whose scores mean the same (same calibration meta and policy
    parameters: per turn, the policy's own rollout reaches the later turns) share one
    file."""

    if not POLICIES[cfg.policy.name].needs_calibration:
        return cfg
    p = policy_params(cfg)
    key = {"meta": calibration_meta(cfg), "grouping": p.grouping,
           "policy": _params(cfg) if p.grouping == "per_turn" else p.grouping,
           "calibration": dataclasses.asdict(cfg.calibration) | {"path": None}}
    kind = calibration_meta(cfg).get("score", "target_ppl").split(":")[0]
    path = out / f"calibration-{kind}-{stable_hash(key)[:10]}.json"
    return cfg.replace(calibration=dataclasses.replace(cfg.calibration, path=str(path)))


# ----------------------------------------------------------------------------- rows


def row_of(label: str, cfg: RunConfig, summary: dict, records: list[dict]) -> dict:
    """One table row from a run's summary and its sample records."""
    complete = [r for r in records if r["status"] in COMPLETE]
    tok = Counter()
    for r in complete:
        tok.update({k: v for k, v in r["tokens"].items() if isinstance(v, int)})
    gen = tok["draft_generated"] + tok["target_generated"]
    # wall time: the span of the sample records (right after a resume too)
    span = (max(r["finished"] for r in complete) - min(r["started"] for r in complete)) if complete else None
    tr = summary["takeover_rate"]
    return {
        "name": label, "policy": cfg.policy.name, "params": _params(cfg),
        "pass@1": summary["pass@1"], "maj@k": summary["maj@k"], "pass@k": summary["pass@k"],
        # the clustered 95% intervals summary.json holds (None in a summary written before them)
        "pass@1_ci": summary.get("pass@1_ci"), "maj@k_ci": summary.get("maj@k_ci"), "pass@k_ci": summary.get("pass@k_ci"),
        "takeover_rate": tr["rate"], "takeover_interval": [tr["low"], tr["high"]], "takeover_decisions": tr["n"],
        "takeover_interval_kind": tr.get("interval", "wilson"),
        "n_samples_completed": summary["n_samples_completed"], "n_failed": summary["n_failed"],
        "wall_seconds": span, "latency_median": summary["latency_median"], "latency_p90": summary["latency_p90"],
        "target_token_share": tok["target_generated"] / gen if gen else None,
        "target_chunk_share": summary["target_chunk_share"],
        "tokens": dict(sorted(tok.items())),
        "throughput_samples_per_s": len(complete) / span if span else None,
        "throughput_tokens_per_s": gen / span if span else None,
        "output_dir": cfg.output_dir,
    }


def _params(cfg: RunConfig) -> dict:
    return cfg.to_dict()["policy"]


def markdown(rows: list[dict], k: int) -> str:
    head = (f"| policy | pass@1 [95%] | maj@{k} [95%] | pass@{k} [95%] | takeover rate [95%] | target share of generated tokens | "
            "draft tokens gen + scored | target tokens gen + scored + judged | median / p90 latency s | wall s | samples/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        t = r["tokens"]
        tr = with_ci(r["takeover_rate"], r["takeover_interval"], 3, ci_digits=2)
        name = r["name"] if r["name"] == r["policy"] else f"{r['name']} ({r['policy']})"
        lines.append(
            f"| {name} | {with_ci(r['pass@1'], r.get('pass@1_ci'), 3, 2)} | {with_ci(r['maj@k'], r.get('maj@k_ci'), 3, 2)} | "
            f"{with_ci(r['pass@k'], r.get('pass@k_ci'), 3, 2)} | {tr} | "
            f"{num(r['target_token_share'])} | {t.get('draft_generated', 0)} + {t.get('draft_scored', 0)} | "
            f"{t.get('target_generated', 0)} + "
            f"{t.get('target_scored', 0)} + {t.get('target_judged', 0)} | {num(r['latency_median'], 1)} / "
            f"{num(r['latency_p90'], 1)} | {num(r['wall_seconds'], 1)} | {num(r['throughput_samples_per_s'], 2)} |")
    return "\n".join(lines) + "\n\n" + ("[95%]: cluster-bootstrap intervals over questions (summary.json `<metric>_ci`; "
                                        "a takeover interval is Wilson's where fewer than two questions made decisions)\n")


def spread(ys: list[float], gap: float) -> list[float]:
    """Label heights for points at ``ys``, in the points' order of height and ``gap``
    apart at least: labels that would crowd form a run centred on their points' mean,
    the others stay at their point, so that no two names print over each other."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    runs: list[list[float]] = []  # each: the heights of its points; labels centred on their mean

    def bottom(run: list[float]) -> float:
        return sum(run) / len(run) - gap * (len(run) - 1) / 2

    for i in order:
        runs.append([ys[i]])
        while len(runs) > 1 and bottom(runs[-1]) - (bottom(runs[-2]) + gap * (len(runs[-2]) - 1)) < gap:
            runs[-2:] = [runs[-2] + runs[-1]]
    heights = [bottom(run) + gap * j for run in runs for j in range(len(run))]
    out = [0.0] * len(ys)
    for i, h in zip(order, heights):
        out[i] = h
    return out


def plot(rows: list[dict], path: Path, title: str) -> None:
    """pass@1 (with its 95% interval) against median sample latency, and against the
    target's token share; each point named, the names spread apart where points crowd."""
    fig, axes = figures.subplots(1, 2, figsize=(12, 5), sharey=True)  # no pyplot: a notebook's backend stays
    for ax, key, xlabel in ((axes[0], "latency_median", "median sample latency (s)"),
                            (axes[1], "target_token_share", "target's share of generated tokens")):
        pts = [(r[key], r["pass@1"], r) for r in rows if r.get(key) is not None and r.get("pass@1") is not None]
        if not pts:
            continue
        for x, y, r in pts:
            lo, hi = r.get("pass@1_ci") or (y, y)
            ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="o", ms=5, capsize=3, zorder=3)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        width = (max(xs) - min(xs)) or 1.0
        for (x, y, r), ly in zip(pts, spread(ys, 0.045)):
            ax.annotate(r["name"], (x, y), xytext=(x + 0.04 * width, ly), fontsize=8, va="center",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"})
        ax.set_xlim(min(xs) - 0.05 * width, max(xs) + 0.45 * width)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass@1 (95% interval)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------- run


async def compare_async(base: RunConfig, entries: list[Entry], out: Path, *, progress: bool = True,
                        command: list[str] | None = None) -> dict:
    rows = []
    records_of: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    async with Session(base) as session:
        urls, roles = session.urls, session.roles
        for e in entries:
            cal = None
            if POLICIES[e.cfg.policy.name].needs_calibration:
                cal = e.cfg.calibration_path
                if not cal.exists():
                    print(f"atts compare: calibrating for {e.label} -> {cal}", file=sys.stderr)
                    (await calibrate_async(e.cfg, roles, progress=progress)).save(cal)
            s = await evaluate_async(e.cfg, roles, calibration=cal, progress=progress, command=command)
            records = list(RunStore(e.cfg.output_dir).completed().values())
            records_of[e.label] = records
            rows.append(row_of(e.label, e.cfg, s, records))
            print(f"atts compare: {e.label}: pass@1 {num(s['pass@1'])}, takeover "
                  f"{num(s['takeover_rate']['rate'])}", file=sys.stderr)
    k = base.samples_per_question
    result = {
        "command": command, "config": base.source_path, "dataset": base.dataset.name, "split": base.dataset.split,
        "limit": base.dataset.limit, "samples_per_question": k, "seed": base.sampling.seed,
        "servers": {r: list(u) for r, u in urls.items()}, "created": time.time(),
        "total_seconds": time.perf_counter() - t0, "rows": rows,
    } | paired_section(base, entries, records_of)
    atomic_write_json(out / "compare.json", result)
    atomic_write_text(out / "compare.md", markdown(rows, k) + result["paired_markdown"])
    plot(rows, out / "compare.png", f"{base.dataset.name}: {base.dataset.limit or 'all'} questions x {k} samples")
    return result


def paired_section(base: RunConfig, entries: list[Entry], records_of: dict[str, list[dict]]) -> dict:
    """Issue 13 item 3: whether seeds were honoured, and every policy against the first,
    paired per question (`atts.analysis.paired`): the valid pairing whether or not
    samples are paired by seed, and the only one where they are not."""
    seeds = seed_support(base)
    ref = entries[0].label
    paired = [(e.label, paired_by_question(records_of[ref], records_of[e.label], seed=base.sampling.seed))
              for e in entries[1:]]
    note = None if seeds["seeds_honoured"] else seeds["reason"]
    return {"seeds_honoured": seeds["seeds_honoured"], "seeds_note": seeds["reason"], "paired_reference": ref,
            "paired_by_question": dict(paired),
            "paired_markdown": paired_markdown(ref, paired, note) if paired else
            (f"\nSeeds not honoured: {note}.\n" if note else "")}


def command(args) -> int:
    """``atts compare`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        base, entries = build_entries(args)
        res = asyncio.run(compare_async(base, entries, Path(args.output), progress=not args.no_progress,
                                        command=sys.argv))
        print(markdown(res["rows"], base.samples_per_question))
        print(f"wrote {Path(args.output) / 'compare.json'}, compare.md, compare.png")
        return 0 if all(r["n_failed"] == 0 for r in res["rows"]) else 1

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["compare", *sys.argv[1:]]))
