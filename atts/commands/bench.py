"""``atts bench --config CFG --output DIR [--limit N] [--samples-per-question K]
[--rows a,b,...] [--levels 64,256,512,1024] [--set KEY=VALUE ...]``

The speed benchmark, side by side in one run against servers started once (or the
config's URLs): the same questions and samples through each row, then the
orchestrator's own cost at several concurrency levels. Writes ``DIR/bench.json`` after
every finished row (a rerun reuses finished rows; ``--fresh`` discards them) and
``DIR/bench.md``; each row's samples are under ``DIR/rows/<name>/``.

Rows (`VARIANTS`): ``target_only``, ``draft_only``, ``atts`` (pipelined),
``atts_unpipelined``, ``sync_ranked`` (if that policy is registered; its takeover
budget is ATTS's measured share of target-written chunks) and ``research_schedule``:
the research code's scheduling of the same ATTS policy (question groups one after
another, no pipelining, text-mode scoring prompts that share no token prefix with the
generation prompts). Every row starts with both servers' radix caches flushed.

Figures: wall time, per-sample latency (median, p90), samples per second, pass@1,
takeover rate, and the share of scoring prompt tokens served from SGLang's radix cache
(sum ``meta_info.cached_tokens`` / sum prompt tokens over score requests); ratios
against ``target_only`` and ``research_schedule``. Orchestrator (`measure_orchestrator`):
this process's CPU seconds (user + system, threads included, the grading worker
processes and the servers excluded) over wall time, event-loop lag p99 and resident
memory, with every sample of the level in flight at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import json
import math
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import yaml

from atts.commands.calibrate import calibrate_async, describe, policy_params
from atts.commands.evaluate import evaluate_async, run_hash
from atts.config import RunConfig, load_config, with_overrides
from atts.errors import ConfigError, run_guarded
from atts.method.policies import POLICIES
from atts.runtime.session import Session, build_roles, close_roles
from atts.runtime.store import RunStore, atomic_write_json, atomic_write_text, versions
from atts.runtime.summary import quantile
from atts.analysis.render import num
from atts.paths import BENCH_TARGETS
from atts.records import first_attempt_decision

ROW_ORDER = ("target_only", "draft_only", "atts", "atts_unpipelined", "sync_ranked", "research_schedule")
DEFAULT_LEVELS = (64, 256, 512, 1024)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row: a policy plus how the runner schedules and scores it."""

    name: str
    policy: str
    sets: tuple[str, ...] = ()
    schedule: str = "concurrent"
    scoring_prompt: str = "shared"


VARIANTS = {v.name: v for v in (
    Variant("target_only", "target_only"),
    Variant("draft_only", "draft_only"),
    Variant("atts", "atts", ("policy.pipeline=true",)),
    Variant("atts_unpipelined", "atts", ("policy.pipeline=false",)),
    Variant("sync_ranked", "sync_ranked"),
    Variant("research_schedule", "atts", ("policy.pipeline=false",), "question_groups", "text"),
)}


# ----------------------------------------------------------------------------- figures


def scoring_cache(records: list[dict]) -> dict:
    """Radix-cache reuse on score requests: cached prompt tokens / prompt tokens."""
    cached = prompt = n = bound = 0
    gen = [0, 0]  # the target's generation requests: cached, prompt tokens
    for rec in records:
        for s in rec["steps"]:
            for r in s.get("requests", ()):
                if r.get("kind") == "generate" and r.get("role") == "target":
                    gen[0] += r.get("cached_tokens", 0)
                    gen[1] += r.get("prompt_tokens", 0)
                if r.get("kind") == "score":
                    n += 1
                    cached += r.get("cached_tokens", 0)
                    prompt += r.get("prompt_tokens", 0)
                    # at most the prefix minus its last token can come from the cache: the
                    # chunk is new to the target, and the logits of the chunk's first token
                    # need the last prefix position recomputed (logprob_start_len = P - 1)
                    bound += r.get("prompt_tokens", 0) - s.get("n_tokens", 0) - 1
    return {"requests": n, "prompt_tokens": prompt, "cached_tokens": cached,
            "hit_rate": cached / prompt if prompt else None,
            "hit_rate_upper_bound": bound / prompt if prompt else None,
            "target_generate_hit_rate": gen[0] / gen[1] if gen[1] else None,
            "target_all_hit_rate": (cached + gen[0]) / (prompt + gen[1]) if prompt + gen[1] else None}


def cost_profile(records: list[dict]) -> dict:
    """The cost terms of ../shared/reference/REAL_WORKLOAD.md, from a row's own records:
    what decides whether ATTS can beat target_only on this hardware.

    - ``draft_chunk_tokens`` / ``target_chunk_tokens``: mean tokens of a chunk;
    - ``attempts_per_turn``: draft chunks written per turn (1 in append mode; replace
      mode's resamples make more draft + score round trips per turn);
    - ``score_over_target_chunk``: mean time of one scoring request over one target
      generation request (the real pair: ~0.6% at 500-token chunks);
    - ``queue_share_<role>``: time requests waited in atts's client pool over their whole
      time (waiting + at the server);
    - ``target_tokens_per_sample``: tokens the target generated per sample (target_only's
      is the full length)."""
    steps = [s for r in records for s in r["steps"]]
    reqs = [q for s in steps for q in s.get("requests", ())]

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs) if xs else None

    turns = sum(len({s["turn"] for s in r["steps"]}) for r in records)
    drafts = [s for s in steps if s["role"] == "draft"]
    prof = {
        "draft_chunk_tokens": mean(s["n_tokens"] for s in drafts),
        "target_chunk_tokens": mean(s["n_tokens"] for s in steps if s["role"] == "target"),
        "attempts_per_turn": len(drafts) / turns if turns and drafts else None,
        "score_over_target_chunk": None,
        "target_tokens_per_sample": mean(r["tokens"]["target_generated"] for r in records),
    }
    score = mean(q["service_s"] for q in reqs if q["kind"] == "score" and q["role"] == "target")
    gen = mean(q["service_s"] for q in reqs if q["kind"] == "generate" and q["role"] == "target")
    if score is not None and gen:
        prof["score_over_target_chunk"] = score / gen
    for role in ("draft", "target"):
        qs = [q for q in reqs if q["role"] == role]
        total = sum(q["queue_s"] + q["service_s"] for q in qs)
        prof[f"queue_share_{role}"] = sum(q["queue_s"] for q in qs) / total if total else None
    return prof


def row_figures(name: str, summary: dict, records: list[dict]) -> dict:
    steps = [s for r in records for s in r["steps"]]
    first = [s for s in steps if first_attempt_decision(s)]
    tr = summary["takeover_rate"]
    cache = scoring_cache(records)
    return {
        "name": name, "policy": summary["policy"], "n_samples": summary["n_samples_completed"],
        "n_failed": summary["n_failed"],
        "wall_seconds": summary["wall_seconds"], "latency_median": summary["latency_median"],
        "latency_p90": summary["latency_p90"],
        "samples_per_second": summary["n_samples_completed"] / summary["wall_seconds"],
        "pass@1": summary["pass@1"], "takeover_rate": tr["rate"], "takeover_decisions": tr["n"],
        "target_chunk_share": summary["target_chunk_share"],
        "tokens": summary["tokens"],
        "cache_hit_rate_scoring": cache["hit_rate"], "scoring_cache": cache,
        # pipelining: share of first-attempt draft chunks that were pre-generated
        "pre_generated_share": (sum(bool(s.get("pre_generated")) for s in first) / len(first)) if first else None,
        "profile": cost_profile(records),
    }


def ratios(row: dict, ref: dict | None) -> dict | None:
    """``row`` against ``ref``: speedup = ref wall / row wall (> 1: row faster)."""
    if ref is None:
        return None

    def div(a, b):
        return a / b if a is not None and b else None

    return {"speedup_wall": div(ref["wall_seconds"], row["wall_seconds"]),
            "wall_ratio": div(row["wall_seconds"], ref["wall_seconds"]),
            "latency_median_ratio": div(row["latency_median"], ref["latency_median"]),
            "latency_p90_ratio": div(row["latency_p90"], ref["latency_p90"]),
            "throughput_ratio": div(row["samples_per_second"], ref["samples_per_second"]),
            "pass@1_diff": (row["pass@1"] - ref["pass@1"]) if row["pass@1"] is not None else None}


def _ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    return a[key] / b[key] if a and b else None


# the figures a target may name (configs/bench_targets.yaml): (rows, orchestrator) -> value
# or None (a row missing), and the digits it is shown with (the goal is met on the exact value)
def _at(level: int):
    """Issue 12's measures at one in-flight level (rows keyed ``name@level``)."""
    def wall(rows, orch):
        return _ratio(rows.get(f"atts@{level}"), rows.get(f"target_only@{level}"), "wall_seconds")

    def per_core(rows, orch):
        a, t = rows.get(f"atts@{level}"), rows.get(f"target_only@{level}")
        w = wall(rows, orch)
        return w * a["cores"] / t["cores"] if w is not None and a.get("cores") and t.get("cores") else None

    def acc(rows, orch):
        a, t = rows.get(f"atts@{level}"), rows.get(f"target_only@{level}")
        return a["pass@1"] - t["pass@1"] if a and t else None
    return {f"atts_wall_over_target_only_at_{level}": (wall, 3),
            f"atts_wall_per_core_over_target_only_at_{level}": (per_core, 3),
            f"atts_pass1_minus_target_only_at_{level}": (acc, 4)}


MEASURES: dict[str, tuple[Callable[[dict, dict], float | None], int]] = {
    **_at(4), **_at(64),
    "atts_wall_over_target_only": (lambda rows, orch: _ratio(rows.get("atts"), rows.get("target_only"),
                                                             "wall_seconds"), 3),
    "atts_pass1_minus_target_only": (lambda rows, orch: (rows["atts"]["pass@1"] - rows["target_only"]["pass@1"]
                                                         if rows.get("atts") and rows.get("target_only") else None), 4),
    "sync_ranked_wall_over_atts": (lambda rows, orch: _ratio(rows.get("sync_ranked"), rows.get("atts"),
                                                             "wall_seconds"), 3),
    "unpipelined_over_pipelined_latency": (lambda rows, orch: _ratio(rows.get("atts_unpipelined"), rows.get("atts"),
                                                                     "latency_median"), 3),
    "orchestrator_cpu_fraction_512": (lambda rows, orch: (orch["512"]["cpu_fraction_of_wall"]
                                                          if orch.get("512") else None), 4),
    "atts_scoring_cache_hit_rate": (lambda rows, orch: (rows["atts"]["cache_hit_rate_scoring"]
                                                        if rows.get("atts") else None), 4),
}
_OPS = {"<=": lambda x, g: x <= g, ">=": lambda x, g: x >= g}


def load_targets(path: Path = BENCH_TARGETS) -> list[dict]:
    """The planning targets (configs/bench_targets.yaml): measure, label, op, goal; a
    ConfigError names a bad entry."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the bench targets: {e}") from None
    targets = (doc or {}).get("targets") if isinstance(doc, dict) else None
    if not isinstance(targets, list):
        raise ConfigError(f"{path}: expected `targets:` with a list of entries")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or t.get("measure") not in MEASURES or t.get("op") not in _OPS \
                or not isinstance(t.get("goal"), (int, float)) or not isinstance(t.get("label"), str):
            raise ConfigError(f"{path}: targets[{i}]: needs label, measure (one of {', '.join(MEASURES)}), "
                              f"op (<= or >=) and a numeric goal; got {t!r}")
    return targets


def check_targets(rows: dict, orch: dict, targets: list[dict] | None = None) -> list[dict]:
    """Each planning target with its measured figure; a target whose rows are missing
    is left out. ``targets``: default configs/bench_targets.yaml."""
    out = []
    for t in load_targets() if targets is None else targets:
        measure, digits = MEASURES[t["measure"]]
        value = measure(rows, orch)
        if value is not None:
            out.append({"target": t["label"], "measured": round(value, digits), "goal": f"{t['op']} {t['goal']}",
                        "met": _OPS[t["op"]](value, t["goal"])})
    return out


# ----------------------------------------------------------------------------- orchestrator


class LoopLag:
    """Event-loop lag: a task sleeping ``period`` s records how much later it wakes."""

    def __init__(self, period: float = 0.01):
        self.period = period
        self.lags: list[float] = []
        self.rss_peak = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.period)
            self.lags.append(time.perf_counter() - t0 - self.period)
            if len(self.lags) % 20 == 0:
                self.rss_peak = max(self.rss_peak, rss_bytes())

    def __enter__(self) -> "LoopLag":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()

    def p(self, q: float) -> float | None:
        return quantile(self.lags, q)


def rss_bytes() -> int:
    import psutil  # deferred: psutil is only needed when the bench measures memory

    return psutil.Process().memory_info().rss


def cpu_seconds() -> float:
    """This process's CPU time, all threads; children (grading workers, servers) excluded."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def level_config(cfg: RunConfig, n: int, max_turns: int, out: Path) -> RunConfig:
    """``n`` samples, all in flight: up to 128 questions x ceil(n/128) samples, each role's
    concurrency limit >= n, turns capped to bound the duration."""
    q = min(n, 128)
    k = math.ceil(n / q)
    return with_overrides(cfg, policy="atts", samples_per_question=k, limit=q, output_dir=str(out),
                          sets=[f"draft.max_concurrency={n + 8}", f"target.max_concurrency={n + 8}",
                                f"chunking.max_turns={max_turns}", "policy.pipeline=true"])


async def measure_orchestrator(cfg: RunConfig, urls: dict, n: int, max_turns: int, out: Path, cal: Path,
                               progress: bool) -> dict:
    lcfg = level_config(cfg, n, max_turns, out)
    roles = build_roles(lcfg, urls)  # pools sized to this level
    versions()  # the run manifest imports sglang, torch...: once per process, not the orchestrator's steady cost
    try:
        await flush_caches(urls)
        c0, t0 = cpu_seconds(), time.perf_counter()
        with LoopLag() as lag:
            s = await evaluate_async(lcfg, roles, calibration=cal, force=True, progress=progress)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        requests = sum(r.engine.counters["requests"] for r in roles.values())
    finally:
        await close_roles(roles)
    return {"concurrent_samples": lcfg.samples_per_question * lcfg.dataset.limit, "max_turns": max_turns,
            "wall_seconds": wall, "cpu_seconds": cpu, "cpu_fraction_of_wall": cpu / wall,
            "requests": requests, "cpu_ms_per_request": 1000 * cpu / max(1, requests),
            "loop_lag_ms_p50": 1000 * (lag.p(0.5) or 0), "loop_lag_ms_p99": 1000 * (lag.p(0.99) or 0),
            "loop_lag_ms_max": 1000 * max(lag.lags, default=0),
            "rss_mb": max(lag.rss_peak, rss_bytes()) / 2**20, "n_failed": s["n_failed"]}


# ----------------------------------------------------------------------------- rows


async def flush_caches(urls: dict) -> None:
    """Empty both servers' radix caches, so a row does not inherit another's prefixes."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as c:
        for role, us in urls.items():
            for u in us:
                for _ in range(20):  # refused while requests are still running
                    try:
                        r = await c.post(u + "/flush_cache")
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.5)
                else:
                    print(f"atts bench: could not flush the {role} server's cache at {u}", file=sys.stderr)


def variant_config(cfg: RunConfig, v: Variant, out: Path, rows: dict) -> RunConfig:
    # the config's policy is ATTS (checked in main); other policies keep the parameters they know
    c = with_overrides(cfg, sets=list(v.sets), policy=v.policy, output_dir=str(out))
    if v.name == "sync_ranked" and rows.get("atts") and hasattr(c.policy.params, "alpha"):
        # same takeover budget: the share of chunks ATTS had the target write
        share = max(1e-3, min(0.999, rows["atts"]["target_chunk_share"]))
        c = with_overrides(c, sets=[f"policy.alpha={share:.4f}"])
    return c


async def run_row(cfg: RunConfig, v: Variant, roles, urls, out: Path, cal: Path, rows: dict, progress: bool,
                  in_flight: int | None = None) -> dict:
    at_level = {n: rows[row_key(n, in_flight)] for n in ROW_ORDER if row_key(n, in_flight) in rows}
    rcfg = variant_config(cfg, v, out, at_level)
    if in_flight is not None:
        rcfg = with_overrides(rcfg, sets=[f"max_in_flight={in_flight}"])
    shutil.rmtree(out, ignore_errors=True)  # a row is timed whole, never resumed half-way
    await flush_caches(urls)
    s = await evaluate_async(rcfg, roles, calibration=cal, force=True, progress=progress,
                             schedule=v.schedule, scoring_prompt=v.scoring_prompt,
                             command=["atts bench", v.name])
    recs = list(RunStore(out).completed().values())
    row = row_figures(v.name, s, recs)
    row["policy_params"] = rcfg.to_dict()["policy"]
    row["schedule"], row["scoring_prompt"] = v.schedule, v.scoring_prompt
    row["max_in_flight"] = in_flight
    row["in_flight"] = min(in_flight, row["n_samples"]) if in_flight else row["n_samples"]
    row["cores"] = cores_used(rcfg, v.policy)
    return row


def row_key(name: str, in_flight: int | None) -> str:
    """A row's key in bench.json: the variant, and the in-flight cap when one is set."""
    return name if in_flight is None else f"{name}@{in_flight}"


def cores_used(cfg: RunConfig, policy: str) -> int:
    """CPU threads of the servers a row keeps busy: target_only and draft_only use one
    server, every other row both (the hardware side of "per unit of hardware")."""
    roles = {"target_only": ("target",), "draft_only": ("draft",)}.get(policy, ("draft", "target"))
    return sum(getattr(cfg, r).cpu_threads or 1 for r in roles)


def with_ratios(rows: dict) -> dict:
    """Each row against target_only and research_schedule at the same in-flight level."""
    out = {}
    for key, row in rows.items():
        lvl = row.get("max_in_flight")
        t, r = rows.get(row_key("target_only", lvl)), rows.get(row_key("research_schedule", lvl))
        vt = ratios(row, t)
        if vt is not None and row.get("cores") and t.get("cores"):
            # wall x cores: the row's hardware-seconds over target_only's
            vt["wall_ratio_per_core"] = vt["wall_ratio"] * row["cores"] / t["cores"] if vt["wall_ratio"] else None
        out[key] = {**row, "vs_target_only": vt, "vs_research_schedule": ratios(row, r)}
    return out


def write_outputs(out: Path, meta: dict, rows: dict, orch: dict, notes: list[str]) -> dict:
    rows = with_ratios(rows)
    levels = sorted({row.get("max_in_flight") for row in rows.values()}, key=lambda x: (x is not None, x or 0))
    ordered = [rows[row_key(n, lvl)] for lvl in levels for n in ROW_ORDER if row_key(n, lvl) in rows]
    a = rows.get("atts") or next((rows[row_key("atts", lvl)] for lvl in levels if row_key("atts", lvl) in rows), None)
    r = rows.get("research_schedule")
    doc = {**meta, "rows": ordered, "orchestrator": orch,
           "cache_hit_rate_scoring": a["cache_hit_rate_scoring"] if a else None,
           "cache_hit_rate_scoring_research_text_mode": r["cache_hit_rate_scoring"] if r else None,
           "targets": check_targets(rows, orch), "notes": notes}
    atomic_write_json(out / "bench.json", doc)
    atomic_write_text(out / "bench.md", format_markdown(doc))
    return doc


def format_markdown(doc: dict) -> str:
    L = [f"command: `{doc.get('command')}`", "",
         f"{doc.get('n_questions')} questions x {doc.get('samples_per_question')} samples per row; "
         f"started {doc.get('started_utc')}", "",
         "| row | wall s | x target_only | x research | median s | p90 s | samples/s | pass@1 | takeover | "
         "target chunks | scoring cache hit | pre-generated |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        vt, vr = r.get("vs_target_only") or {}, r.get("vs_research_schedule") or {}
        name = r["name"] if r.get("max_in_flight") is None else f"{r['name']} @ {r['max_in_flight']} in flight"
        L.append(f"| {name} | {num(r['wall_seconds'], 1)} | {num(vt.get('speedup_wall'), 2)} | "
                 f"{num(vr.get('speedup_wall'), 2)} | {num(r['latency_median'], 2)} | {num(r['latency_p90'], 2)} | "
                 f"{num(r['samples_per_second'], 2)} | {num(r['pass@1'])} | {num(r['takeover_rate'])} | "
                 f"{num(r['target_chunk_share'])} | {num(r['cache_hit_rate_scoring'])} | {num(r['pre_generated_share'])} |")
    L += ["", "x target_only / x research: speedup in wall time (reference wall / row wall), at the same "
          "in-flight level.", ""]
    hw = [r for r in doc["rows"] if (r.get("vs_target_only") or {}).get("wall_ratio_per_core") is not None]
    if hw:
        L += ["| row | in flight | cores used | wall / target_only wall | per core: (wall x cores) / (target_only wall x cores) |",
              "|---|---|---|---|---|"]
        for r in hw:
            vt = r["vs_target_only"]
            L.append(f"| {r['name']} | {r.get('in_flight')} | {r.get('cores')} | {num(vt['wall_ratio'], 3)} | "
                     f"{num(vt['wall_ratio_per_core'], 3)} |")
        L.append("")
    prof = [r for r in doc["rows"] if r.get("profile")]
    if prof:
        L += ["Cost terms (REAL_WORKLOAD.md), from each row's records:", "",
              "| row | in flight | draft chunk tokens | target chunk tokens | draft attempts / turn | "
              "score / target chunk time | queue share draft / target | target tokens / sample |",
              "|---|---|---|---|---|---|---|---|"]
        for r in prof:
            p = r["profile"]
            L.append(f"| {r['name']} | {r.get('in_flight')} | {num(p['draft_chunk_tokens'], 1)} | "
                     f"{num(p['target_chunk_tokens'], 1)} | {num(p['attempts_per_turn'], 2)} | "
                     f"{num(p['score_over_target_chunk'], 3)} | {num(p['queue_share_draft'], 2)} / "
                     f"{num(p['queue_share_target'], 2)} | {num(p['target_tokens_per_sample'], 0)} |")
        L.append("")
    if doc["orchestrator"]:
        L += ["| concurrent samples | wall s | client CPU / wall | CPU ms / request | loop lag p50 / p99 / max ms | RSS MB |",
              "|---|---|---|---|---|---|"]
        for n, o in doc["orchestrator"].items():
            L.append(f"| {n} | {num(o['wall_seconds'], 1)} | {num(o['cpu_fraction_of_wall'], 4)} | "
                     f"{num(o['cpu_ms_per_request'], 2)} | {num(o['loop_lag_ms_p50'], 1)} / {num(o['loop_lag_ms_p99'], 1)}"
                     f" / {num(o['loop_lag_ms_max'], 1)} | {num(o['rss_mb'], 0)} |")
        L.append("")
    L += ["| target | measured | goal | met |", "|---|---|---|---|"]
    for t in doc["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "NO")
        L.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {met} |")
    for n in doc["notes"]:
        L += ["", f"note: {n}"]
    return "\n".join(L) + "\n"


def format_table(doc: dict) -> str:
    return format_markdown(doc)


# ----------------------------------------------------------------------------- main


async def bench_async(cfg: RunConfig, out: Path, names: list[str], levels: list[int], max_turns: int,
                      fresh: bool, progress: bool, command: str, in_flight: list[int] | None = None) -> dict:
    """Every row at every in-flight level (``in_flight``: caps on samples at once; None:
    every sample at once), then the orchestrator levels."""
    out.mkdir(parents=True, exist_ok=True)
    prev = {}
    if (out / "bench.json").exists() and not fresh:
        old = json.loads((out / "bench.json").read_text())
        if old.get("config_hash") == _bench_hash(cfg):
            prev = old
    rows = {row_key(r["name"], r.get("max_in_flight")): r for r in prev.get("rows", ())}
    orch = dict(prev.get("orchestrator", {}))
    notes: list[str] = []
    meta = {"command": command, "config": cfg.to_dict(public=True), "config_hash": _bench_hash(cfg),
            "n_questions": cfg.dataset.limit, "samples_per_question": cfg.samples_per_question,
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    for n in names:
        if VARIANTS[n].policy not in POLICIES:
            notes.append(f"row {n} skipped: policy {VARIANTS[n].policy!r} is not registered in atts.method.policies")
            rows.pop(n, None)
    cal = cfg.calibration_path
    async with Session(cfg, log_dir=out / "logs", servers_json=out / "servers.json") as session:
        urls, roles = session.urls, session.roles
        if not cal.exists():
            c = await calibrate_async(cfg, roles, progress=progress)
            c.save(cal)
            print(describe(c, policy_params(cfg).alpha), file=sys.stderr)
        for lvl in in_flight or [None]:
            for n in names:
                key = row_key(n, lvl)
                if key in rows or VARIANTS[n].policy not in POLICIES:
                    continue
                print(f"atts bench: row {key}", file=sys.stderr)
                rows[key] = await run_row(cfg, VARIANTS[n], roles, urls, out / "rows" / key, cal, rows, progress, lvl)
                write_outputs(out, meta, rows, orch, notes)
        await session.close(roles)  # the orchestrator levels build their own pools, sized to each level
        for lvl in levels:
            if str(lvl) in orch:
                continue
            print(f"atts bench: orchestrator at {lvl} concurrent samples", file=sys.stderr)
            orch[str(lvl)] = await measure_orchestrator(cfg, urls, lvl, max_turns, out / "orchestrator" / str(lvl),
                                                        cal, progress)
            write_outputs(out, meta, rows, orch, notes)
    return write_outputs(out, meta, rows, orch, notes)


def _bench_hash(cfg: RunConfig) -> str:
    d = dataclasses.replace(cfg, output_dir="-")
    return run_hash(d, None) + f"-{cfg.dataset.limit}-{cfg.samples_per_question}"


def command(args) -> int:
    """``atts bench`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        names = [n.strip() for n in args.rows.split(",") if n.strip()]
        bad = [n for n in names if n not in VARIANTS]
        if bad:
            raise ConfigError(f"--rows: unknown row(s) {', '.join(bad)}; known: {', '.join(ROW_ORDER)}")
        try:
            levels = [int(x) for x in args.levels.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--levels: expected comma-separated integers, got {args.levels!r}") from None
        if any(n <= 0 for n in levels):
            raise ConfigError("--levels: must be > 0")
        try:
            in_flight = [int(x) for x in args.max_in_flight.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--max-in-flight: expected comma-separated integers, got {args.max_in_flight!r}") from None
        if any(n <= 0 for n in in_flight):
            raise ConfigError("--max-in-flight: must be > 0")
        out = Path(args.output)
        cfg = with_overrides(load_config(args.config), limit=args.limit, output_dir=str(out),
                             samples_per_question=args.samples_per_question, calibration=args.calibration,
                             sets=args.set)
        if cfg.policy.name != "atts":
            raise ConfigError(f"bench: the config's policy must be atts (its parameters define the atts rows), "
                              f"got {cfg.policy.name!r}")
        if cfg.dataset.limit is None:
            raise ConfigError("bench: set dataset.limit in the config or pass --limit")
        if not cfg.calibration.path:
            cfg = with_overrides(cfg, calibration=str(out / "calibration.json"))
        command = getattr(args, "command_line", "atts bench")
        doc = asyncio.run(bench_async(cfg, out, names, levels, args.orchestrator_max_turns, args.fresh,
                                      not args.no_progress, command, in_flight or None))
        print(format_table(doc))
        print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["bench", *sys.argv[1:]]))
