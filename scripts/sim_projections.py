"""The projections of docs/simulation.md: ATTS against target_only on the shared traces
at several numbers of samples in flight, one replay per row (same trace setup, exact
token counts), each row appended to OUT as soon as it is done (a rerun skips rows
already there).

    PYTHONPATH=. python scripts/sim_projections.py --shared ../shared --out results/sim/projections.json \
        [--rows atts@16,target_only@16,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from atts.sim.command import figures, make_setup, replay_once
from atts.sim.hardware import load_hardware
from atts.sim.schedules import build_schedule
from atts.sim.traces import load_trace

# name -> (schedule, max_in_flight, prompts, target_only_factor[, pipeline])
ROWS = {
    "research": ("research", None, None, 1.0),
    "atts@16": ("concurrent", 16, "shared", 1.0),
    "atts@64": ("concurrent", 64, "shared", 1.0),
    "atts@128": ("concurrent", 128, "shared", 1.0),
    "atts@256": ("concurrent", 256, "shared", 1.0),
    "atts@1600": ("concurrent", None, "shared", 1.0),
    "atts_research_prompts@16": ("concurrent", 16, "research", 1.0),
    "atts_research_prompts@256": ("concurrent", 256, "research", 1.0),
    "atts_research_prompts@1600": ("concurrent", None, "research", 1.0),
    "atts_unpipelined@16": ("concurrent", 16, "shared", 1.0, False),
    "atts_unpipelined@256": ("concurrent", 256, "shared", 1.0, False),
    "atts_unpipelined@1600": ("concurrent", None, "shared", 1.0, False),
    "sync_ranked@256": ("sync_ranked", 256, "shared", 1.0),
    "sync_ranked@1600": ("sync_ranked", None, "shared", 1.0),
    "target_only@16": ("target_only", 16, None, 1.0),
    "target_only@64": ("target_only", 64, None, 1.0),
    "target_only@128": ("target_only", 128, None, 1.0),
    "target_only@256": ("target_only", 256, None, 1.0),
    "target_only@1600": ("target_only", None, None, 1.0),
    "target_only_x1.24@16": ("target_only", 16, None, 1.24),
    "target_only_x1.24@64": ("target_only", 64, None, 1.24),
    "target_only_x1.24@256": ("target_only", 256, None, 1.24),
    "target_only_x1.24@1600": ("target_only", None, None, 1.24),
}
KEEP = ("wall_seconds", "samples_per_second", "samples_per_second_per_gpu", "gpus", "output_tokens_per_second",
        "latency_median", "latency_p90", "latency_mean", "draft_tokens_generated", "target_tokens_generated",
        "target_tokens_scored", "divergence", "replay_cpu_seconds")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", required=True, help="the ../shared directory (traces, tokenizers)")
    ap.add_argument("--hardware", default="configs/hardware/h100_r1llama8b_qwq32b.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--markdown", action="store_true", help="print OUT's rows as the tables of docs/simulation.md")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.out).read_text())))
        return 0
    shared = Path(a.shared)
    out = Path(a.out)
    done = json.loads(out.read_text()) if out.exists() else {}
    trace = load_trace(shared / "reference/atts_traces/math500_r1llama8b_qwq32b.jsonl.gz")
    hw = load_hardware(a.hardware)
    setups = {}
    for name in a.rows.split(","):
        if name in done:
            continue
        sched_name, mif, prompts, factor, *pipe = ROWS[name]
        if factor not in setups:
            setups[factor] = make_setup(trace, draft_tokenizer=str(shared / "reference/tokenizers/llama3_1"),
                                        target_tokenizer=str(shared / "reference/tokenizers/qwen3"),
                                        target_only_factor=factor)
        sched = build_schedule(sched_name, trace, mif, prompts, pipe[0] if pipe else None)
        t0 = time.process_time()
        run = replay_once(setups[factor], hw, sched, timeline=False)
        f = figures(run, trace, sched, hw)
        row = {k: f[k] for k in KEEP}
        row["servers"] = {n: {k: s[k] for k in ("busy_seconds", "utilisation", "mean_decode_batch", "cache_hit_rate",
                                                "mean_kv_occupancy_busy", "retractions", "prefill_tokens")}
                          for n, s in f["servers"].items()}
        row["schedule"] = sched.describe()
        row["target_only_factor"] = factor if sched_name == "target_only" else None
        done[name] = row
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(done, indent=1))
        print(f"{name}: wall {f['wall_seconds']:.0f} s, latency median {f['latency_median']:.1f} s, "
              f"p90 {f['latency_p90']:.1f} s ({time.process_time() - t0:.0f} s CPU)", flush=True)
        for p in setups[factor].prompters.values():
            p.counter.save()
    return 0


def _r(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def markdown(d: dict) -> str:
    L = ["| row | in flight | wall s | samples/s | output tok/s | latency median / p90 s | GPUs | samples/s/GPU "
         "| decode batch draft / target | target radix hit | target prefill Mtok |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in [n for n in ROWS if n in d] + [n for n in d if n not in ROWS]:
        r = d[name]
        sv = r["servers"]
        db = sv.get("draft0", {}).get("mean_decode_batch")
        tb = sv.get("target0", {}).get("mean_decode_batch")
        mif = r["schedule"]["max_in_flight"] or (1600 if r["schedule"]["name"] != "research" else "16 (groups)")
        L.append(f"| {name} | {mif} | {r['wall_seconds']:,.0f} | {r['samples_per_second']:.3f} | "
                 f"{r['output_tokens_per_second']:,.0f} | {r['latency_median']:.1f} / {r['latency_p90']:.1f} | {r['gpus']} | "
                 f"{r['samples_per_second_per_gpu']:.4f} | {'-' if db is None else f'{db:.1f}'} / {tb:.1f} | "
                 f"{sv['target0']['cache_hit_rate']:.2f} | {sv['target0']['prefill_tokens'] / 1e6:.1f} |")
    L += ["", "| in flight | ATTS vs target_only: throughput (x1.0 / x1.24 length) | latency median | latency p90 "
          "| per GPU (3 vs 2 GPUs; x1.0 / x1.24) |", "|---|---|---|---|---|"]
    for n in (16, 64, 128, 256, 1600):
        a, t, t2 = d.get(f"atts@{n}"), d.get(f"target_only@{n}"), d.get(f"target_only_x1.24@{n}")
        if not (a and t):
            continue
        g = lambda x: x["samples_per_second_per_gpu"] if x else None  # noqa: E731
        L.append(f"| {n} | {_r(a['samples_per_second'], t['samples_per_second'])} / "
                 f"{_r(a['samples_per_second'], t2['samples_per_second'] if t2 else None)} | "
                 f"{_r(t['latency_median'], a['latency_median'])} | {_r(t['latency_p90'], a['latency_p90'])} | "
                 f"{_r(g(a), g(t))} / {_r(g(a), g(t2))} |")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
