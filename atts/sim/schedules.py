"""The schedules `atts simulate` compares: which project policy runs, how the project's
runner schedules it, and what caps the client applies.

- ``research``: the research code's schedule: question groups one after another
  (`atts.runtime.runner.run_all(schedule="question_groups")`), each group's samples concurrent,
  client caps of 16 draft / 4 target requests, no pipelining, research-style prompts
  (the target's scoring prompt is the question and history as plain text, sharing no
  prefix with generation prompts: ``Chunking.scoring_prompt = "text"``);
- ``concurrent``: the project's runner and ATTS (pipelined): every sample at once, or at
  most ``max_in_flight`` samples (and requests per role) in flight;
- ``sync_ranked``: the project's `SyncRanked` policy: a per-question barrier each turn,
  the B = alpha x n highest-PPL chunks of a question handed to the target, alpha = the
  trace's takeover rate (the same share of takeovers);
- ``target_only``: the project's `TargetOnly` policy: the target writes every chunk
  (lengths from the trace when it is a target-only run, else `engine.Synth`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from atts.method.conformal import ConformalCalibration, ConformalGate
from atts.method.policies import ATTSParams, SyncRankedParams, make_policy
from atts.sim.traces import Trace

SCHEDULES = ("research", "concurrent", "sync_ranked", "target_only")
RESEARCH_CAPS = {"draft": 16, "target": 4}


class ScheduleError(ValueError):
    """A schedule that cannot run on this trace (a user error)."""


@dataclass(frozen=True)
class Schedule:
    name: str
    policy: str
    runner_schedule: str  # concurrent | question_groups (atts.runtime.runner.run_all)
    scoring_prompt: str  # shared | text (atts.runtime.runner.Chunking)
    caps: dict  # role -> client cap on requests in flight (None: unlimited)
    max_in_flight: int | None  # samples in flight (None: all)
    pipeline: bool

    def describe(self) -> dict:
        return dataclasses.asdict(self)


def research_alpha(n: int, percentile: float = 0.6) -> float:
    """The conformal level whose test equals the research code's rule "take over iff
    the PPL's percentile among the n calibration PPLs (share <= it) is >= percentile":
    #{S <= s} >= ceil(q n)  <=>  #{S > s} <= n - ceil(q n)  <=>  (1 + #{S >= s}) / (n + 1)
    <= (1 + n - ceil(q n)) / (n + 1) for a score equal to no calibration score."""
    return (1 + n - math.ceil(percentile * n - 1e-9)) / (n + 1)


def build_schedule(name: str, trace: Trace, max_in_flight: int | None, prompts: str | None,
                   pipeline: bool | None = None) -> Schedule:
    if name not in SCHEDULES:
        raise ScheduleError(f"--schedule: one of {', '.join(SCHEDULES)}, got {name!r}")
    if max_in_flight is not None and max_in_flight < 1:
        raise ScheduleError("--max-in-flight: must be >= 1")
    if name == "research":
        if max_in_flight is not None:
            raise ScheduleError("--max-in-flight: the research schedule has its own caps (16 draft / 4 target requests)")
        return Schedule(name, "atts", "question_groups", "text", dict(RESEARCH_CAPS), None, False)
    k = trace.samples_per_question
    cap = max_in_flight
    if name == "sync_ranked" and cap is not None:
        cap = k * math.ceil(cap / k)  # whole question groups, else the per-question barrier never completes
    caps = {"draft": cap, "target": cap}
    if cap is None and trace.form == "atts-run":  # the recorded run's client caps
        caps = {r: (trace_config(trace).get(r) or {}).get("max_concurrency") for r in ("draft", "target")}
    scoring = {"shared": "shared", "research": "text", None: "shared"}[prompts]
    policy = {"concurrent": "atts"}.get(name, name)
    if name == "concurrent" and trace.form == "atts-run" and trace.policy.get("name") not in (None, "atts"):
        policy = trace.policy["name"]  # replaying a run of another policy: that policy
    pipe = bool(trace.policy.get("pipeline", True)) if pipeline is None else pipeline
    return Schedule(name, policy, "concurrent", scoring, caps, cap, pipe)


def trace_config(trace: Trace) -> dict:
    return trace.config or {}


def takeover_rate(trace: Trace) -> float:
    d = [st.decision for s in trace.samples for st in s.steps if st.kind == "score" and st.attempt == 0 and st.decision]
    return sum(x == "takeover" for x in d) / len(d) if d else 0.4


def build_policy(sched: Schedule, trace: Trace, calibration=None):
    """The project's policy for ``sched``, with the gate that reproduces the recorded
    run's test: its calibration file (atts runs), or the research rule (percentile >= 0.6
    against the calibration array) as the equivalent conformal test."""
    if sched.policy == "target_only" or sched.policy == "draft_only":
        return make_policy(sched.policy, None)
    if sched.policy == "sync_ranked":
        a = min(0.999, max(1e-3, takeover_rate(trace)))
        return make_policy("sync_ranked", SyncRankedParams(alpha=a))
    if sched.policy != "atts":
        raise ScheduleError(f"atts simulate replays atts, sync_ranked and target_only, not {sched.policy!r}")
    rec = dict(trace.policy)
    if trace.form == "atts-run":
        fields = {f.name for f in dataclasses.fields(ATTSParams)}
        params = ATTSParams(**{k: v for k, v in rec.items() if k in fields})
        params = dataclasses.replace(params, pipeline=sched.pipeline)
        cal = calibration or trace.calibration_file
        if cal is None:
            raise ScheduleError(f"{trace.source}: the run's calibration file is gone; pass --calibration")
        return make_policy("atts", params, cal.gate(params.alpha))
    scores = calibration if calibration is not None else trace.calibration
    if scores is None:
        raise ScheduleError(f"{trace.source}: no calibration array beside the traces; pass --calibration FILE.npy")
    alpha = research_alpha(len(scores))
    gate = ConformalGate("marginal", {"all": ConformalCalibration(tuple(scores), alpha, None)})
    params = ATTSParams(alpha=alpha, mode="append", grouping="marginal", max_resample=0, randomize_ties=False,
                        pipeline=sched.pipeline)
    return make_policy("atts", params, gate)
