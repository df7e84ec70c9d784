"""``simulate(...)``: replay a trace through the project's runner on simulated servers.

One replay (`replay_once`) builds, on a fresh virtual-time loop: one `Server` per replica
of each role (costs from the hardware profile), one `SimEngine` per role, the project's
policy for the schedule (wrapped by `TimedPolicy`), and runs `atts.runtime.runner.run_all` over
the trace's questions. `simulate` runs it at the nominal efficiencies and, for the
sensitivity band, at each efficiency minus and plus its uncertainty, then writes
``simulate.json``, ``simulate.md`` and ``simulate.png`` (`atts.sim.report`).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from atts.tasks.datasets import Question
from atts.runtime.runner import Chunking, Role, run_all
from atts.sim import clock
from atts.sim.engine import Replay, SimEngine, SimPrompter, Synth, TimedPolicy, TokenCounter
from atts.sim.hardware import Hardware, load_hardware
from atts.sim.report import write_outputs
from atts.sim.schedules import Schedule, build_policy, build_schedule
from atts.sim.server import Server
from atts.sim.traces import Trace, load_trace
from atts.runtime.summary import quantile

DEFAULT_CHARS_PER_TOKEN = 2.8  # R1 text per Llama-3 token (../shared/reference/REAL_WORKLOAD.md)


class _MemoryStore:
    """The `RunStore` interface the runner uses, in memory; samples absent from the
    trace count as done (the runner skips them)."""

    def __init__(self, skip: set[str]):
        self.skip = skip
        self.records: list[dict] = []

    def completed(self) -> dict:
        return {k: {"status": "done"} for k in self.skip}

    def write_sample(self, rec: dict) -> None:
        self.records.append(rec)


class _NoGrader:
    """Correctness is not simulated (the trace's answers are what they are)."""

    def grade(self, items):
        return [None] * len(items)


@dataclass
class Setup:
    """What every replay of one trace shares (token counts are computed once)."""

    trace: Trace
    prompters: dict
    questions: list
    k: int
    chunking: Chunking
    synth: Synth
    token_counts: str


def make_setup(trace: Trace, *, draft_tokenizer: str | None = None, target_tokenizer: str | None = None,
               chars_per_token: float = DEFAULT_CHARS_PER_TOKEN, target_only_factor: float = 1.0,
               max_turns: int | None = None) -> Setup:
    counters = {"draft": TokenCounter("draft", draft_tokenizer, chars_per_token),
                "target": TokenCounter("target", target_tokenizer, chars_per_token)}
    prompters = {r: SimPrompter(c) for r, c in counters.items()}
    by_q: dict[int, tuple] = {}
    for s in trace.samples:
        by_q.setdefault(s.question_index, (s.question_id, s.question, s.gold))
    questions = [Question(i, qid, text, gold, "math") for i, (qid, text, gold) in sorted(by_q.items())]
    ch, sm = trace.chunking, trace.sampling
    max_tokens = int(ch.get("max_tokens_per_chunk", 500))
    turns = max_turns or int(ch.get("max_turns", max(15, max(s.turns for s in trace.samples))))
    chunking = Chunking(tuple(ch.get("stop") or ()), max_tokens, turns, int(ch.get("token_budget", 10**9)),
                        float(sm.get("top_p", 1.0)), int(sm.get("seed", 0)))
    if trace.form != "atts-run":
        # a research chunk the trace goes on after was cut at max_tokens of its writer: without
        # that writer's tokenizer, its own count is max_tokens exactly, not a character estimate
        for s in trace.samples:
            for st in s.steps:
                if st.kind == "generate" and st.finish == "length" and not counters[st.role].exact:
                    prompters[st.role].register(st.text, max_tokens)
    tp = prompters["target"]
    tgt = [tp.count(st.text) for s in trace.samples for st in s.steps if st.kind == "generate" and st.role == "target"]
    synth = Synth(round(statistics.mean(tgt)) if tgt else max_tokens, target_only_factor, max_tokens)
    mode = ", ".join(f"{r}: {'exact (tokenizer, per paragraph)' if c.exact else f'{c.chars_per_token} chars/token'}"
                     for r, c in counters.items())
    if trace.form != "atts-run" and not all(c.exact for c in counters.values()):
        mode += f" (a research chunk cut at max_tokens counts {max_tokens} for its writer)"
    return Setup(trace, prompters, questions, trace.samples_per_question, chunking, synth, mode)


def replay_once(setup: Setup, hw: Hardware, sched: Schedule, shift: float = 0.0, calibration=None,
                timeline: bool = True) -> dict:
    """One replay at efficiency shift ``shift`` (0 nominal, -1 slow, +1 fast)."""
    trace = setup.trace
    costs = hw.costs(shift)
    target_only = sched.policy == "target_only" and trace.policy.get("name") != "target_only"
    turns = setup.chunking.max_turns
    if target_only:  # enough turns for the longest target-only sample
        rp0 = Replay(trace, setup.prompters, setup.synth, setup.chunking.seed, 0, target_only=True)
        longest = max(rp0.target_only_tokens(s.key) for s in trace.samples)
        turns = max(turns, math.ceil(longest / setup.synth.max_tokens) + 1)
    chunking = Chunking(setup.chunking.stop, setup.chunking.max_tokens, turns, setup.chunking.token_budget,
                        setup.chunking.top_p, setup.chunking.seed, sched.scoring_prompt)
    replay = Replay(trace, setup.prompters, setup.synth, chunking.seed, turns, target_only=target_only)
    policy = TimedPolicy(build_policy(sched, trace, calibration), sched.max_in_flight)
    present = {s.key for s in trace.samples}
    skip = {f"q{q.index:05d}-r{r:03d}" for q in setup.questions for r in range(setup.k)} - present
    store = _MemoryStore(skip)
    log: list = []
    servers: dict[str, list[Server]] = {}

    async def main():
        loop = asyncio.get_running_loop()
        roles = {}
        for r in ("draft", "target"):
            c = costs[r]
            servers[r] = [Server(f"{r}{i}", c, loop, timeline) for i in range(c.replicas)]
            cap = sched.caps.get(r) or 10**9
            eng = SimEngine(r, servers[r], replay, cap, c.request_overhead, log)
            roles[r] = Role(r, eng, setup.prompters[r], 0.8)
        return await run_all(policy, setup.questions, setup.k, roles, chunking, store, _NoGrader(), progress=False,
                             schedule=sched.runner_schedule)

    t0 = time.process_time()
    _, wall = clock.run(main())
    cpu = time.process_time() - t0
    return {"wall": wall, "records": store.records, "started": policy.started, "ended": policy.ended,
            "servers": servers, "log": log, "divergence": dict(replay.divergence), "cpu_seconds": cpu,
            "synth": setup.synth, "max_turns": turns, "costs": costs}


def figures(run: dict, trace: Trace, sched: Schedule, hw: Hardware) -> dict:
    """The headline figures of one replay."""
    wall, recs = run["wall"], run["records"]
    lat = {k: run["ended"][k] - run["started"][k] for k in run["started"] if k in run["ended"]}
    lats = list(lat.values())
    out_tok = sum(r["tokens"].get("draft_generated", 0) + r["tokens"].get("target_generated", 0) for r in recs)
    gpus = sum(run["costs"][r].gpus for r in ("draft", "target") if _role_used(run, r))
    servers = {s.name: s.stats(wall) for r in ("draft", "target") for s in run["servers"][r]}
    return {"wall_seconds": wall, "samples": len(recs),
            "samples_per_second": len(recs) / wall if wall else None,
            "output_tokens": out_tok, "output_tokens_per_second": out_tok / wall if wall else None,
            "draft_tokens_generated": sum(r["tokens"].get("draft_generated", 0) for r in recs),
            "target_tokens_generated": sum(r["tokens"].get("target_generated", 0) for r in recs),
            "target_tokens_scored": sum(r["tokens"].get("target_scored", 0) for r in recs),
            "latency_median": statistics.median(lats) if lats else None, "latency_p90": quantile(lats, 0.9),
            "latency_mean": statistics.mean(lats) if lats else None,
            "gpus": gpus, "samples_per_second_per_gpu": len(recs) / wall / gpus if wall and gpus else None,
            "servers": servers, "requests": len(run["log"]), "divergence": run["divergence"],
            "replay_cpu_seconds": run["cpu_seconds"], "latencies": lat}


def _role_used(run: dict, role: str) -> bool:
    return any(s.busy > 0 for s in run["servers"][role])


def compare_with_trace(run: dict, trace: Trace) -> dict:
    """Decisions and durations against the recorded run."""
    rec_dec = {(s.key, st.turn, st.attempt): st.decision for s in trace.samples for st in s.steps
               if st.decision and (st.kind == "score" or trace.form == "atts-run") and st.role in ("draft", "target")}
    sim_dec = {(r["key"], s["turn"], s.get("attempt", 0)): s["decision"] for r in run["records"] for s in r["steps"]
               if s.get("decision")}
    common = set(rec_dec) & set(sim_dec)
    agree = sum(rec_dec[k] == sim_dec[k] for k in common)
    real = {s.key: s.duration_s for s in trace.samples if s.duration_s is not None}
    lat = run["latencies"] if "latencies" in run else {}
    keys = [k for k in real if k in lat]
    r = pearson([real[k] for k in keys], [lat[k] for k in keys]) if len(keys) > 2 else None
    turns_rec = {s.key: s.turns for s in trace.samples}
    turns_sim = {r_["key"]: r_["turns"] for r_ in run["records"]}
    return {"decisions_recorded": len(rec_dec), "decisions_simulated": len(sim_dec), "decisions_compared": len(common),
            "decisions_agree": agree, "decision_agreement": agree / len(common) if common else None,
            "samples_with_other_turn_count": sum(turns_rec.get(k) != v for k, v in turns_sim.items()),
            "duration_correlation_r": r, "durations_compared": len(keys),
            "real_duration_median": statistics.median(real.values()) if real else None,
            "real_duration_mean": statistics.mean(real.values()) if real else None}


def pearson(xs: list[float], ys: list[float]) -> float | None:
    mx, my = statistics.mean(xs), statistics.mean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return sxy / (sx * sy) if sx and sy else None


def simulate(traces: str | Path, hardware: str | Path, schedule: str, output: str | Path, *,
             max_in_flight: int | None = None, prompts: str | None = None, draft_tokenizer: str | None = None,
             target_tokenizer: str | None = None, chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
             target_only_factor: float = 1.0, band: bool = True, real_wall_seconds: float | None = None,
             calibration: str | Path | None = None, limit: int | None = None, pipeline: bool | None = None,
             samples_per_question: int = 16, command: str | None = None, plot: bool = True) -> dict:
    """Simulate ``traces`` under ``schedule`` on ``hardware``; write DIR/simulate.json,
    simulate.md and simulate.png; return the simulate.json document."""
    trace = load_trace(traces, samples_per_question)
    if limit is not None:
        keep = sorted({s.question_index for s in trace.samples})[:limit]
        trace.samples = [s for s in trace.samples if s.question_index in set(keep)]
    hw = load_hardware(hardware)
    sched = build_schedule(schedule, trace, max_in_flight, prompts, pipeline)
    cal = load_calibration(calibration) if calibration else None
    setup = make_setup(trace, draft_tokenizer=draft_tokenizer, target_tokenizer=target_tokenizer,
                       chars_per_token=chars_per_token, target_only_factor=target_only_factor)
    nominal = replay_once(setup, hw, sched, 0.0, cal)
    for p in setup.prompters.values():
        p.counter.save()
    fig = figures(nominal, trace, sched, hw)
    cmp = compare_with_trace({**nominal, "latencies": fig["latencies"]}, trace)
    sens = {}
    if band:
        for name, shift in (("slow", -1.0), ("fast", 1.0)):
            f = figures(replay_once(setup, hw, sched, shift, cal, timeline=False), trace, sched, hw)
            sens[name] = {k: f[k] for k in ("wall_seconds", "samples_per_second", "latency_median", "latency_p90")}
    real = real_wall_seconds if real_wall_seconds is not None else trace.real_wall_seconds
    doc = {
        "command": command, "traces": {"form": trace.form, "source": str(traces), "samples": len(trace.samples),
                                       "questions": len(setup.questions), "samples_per_question": setup.k,
                                       "token_counts": setup.token_counts, "notes": trace.notes},
        "hardware": {"name": hw.name, "path": str(hardware), "costs": hw.describe()},
        "schedule": sched.describe(),
        "assumptions": assumptions(setup, sched, nominal),
        **{k: v for k, v in fig.items() if k != "latencies"},
        "sensitivity": sens,
        "vs_recorded": {**cmp, "real_wall_seconds": real,
                        "wall_error": (fig["wall_seconds"] - real) / real if real else None},
    }
    out = Path(output)
    write_outputs(out, doc, nominal, plot=plot)
    return doc


def assumptions(setup: Setup, sched: Schedule, run: dict) -> list[str]:
    a = [f"token counts: {setup.token_counts}",
         f"runner: atts.runtime.runner.run_all(schedule={sched.runner_schedule!r}), policy {sched.policy!r}, "
         f"scoring prompt {sched.scoring_prompt!r}, pipeline {sched.pipeline}",
         f"client caps on requests in flight: {sched.caps}; samples in flight: {sched.max_in_flight or 'all'}",
         f"max turns {run['max_turns']}, chunk {setup.chunking.max_tokens} tokens",
         "correctness is not simulated: answers are the trace's"]
    if sched.policy == "target_only" and setup.trace.policy.get("name") != "target_only":
        a.append(f"target_only length: {setup.synth.target_only_factor} x each sample's kept tokens (draft and target "
                 f"chunks, in target tokens), in chunks of {setup.synth.max_tokens}")
    if run["divergence"]:
        a.append(f"chunks outside the trace: {run['divergence']} (unrecorded takeover: a target chunk of "
                 f"{setup.synth.target_chunk_tokens} tokens, the trace's mean)")
    return a


def load_calibration(path: str | Path):
    """A calibration: an atts calibration file (.json) or a research PPL array (.npy)."""
    p = Path(path)
    if p.suffix == ".npy":
        import numpy as np

        return np.load(p).astype(float).ravel().tolist()
    from atts.method.conformal import CalibrationFile

    return CalibrationFile.load(p)
