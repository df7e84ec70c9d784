"""``python -m atts.calibrate --config CFG [--output PATH] [--limit N]``

Rolls out the draft on the calibration split, scores its chunks with the target, and
writes a calibration file (`atts.conformal.CalibrationFile`).

- ``marginal`` / ``per_question``: every sample's first draft chunk (turn 0), scored by
  the target; all scores pooled, or kept per question.
- ``per_turn``: sequential, so that turn t's scores come from the same process as at
  evaluation (after a takeover the context is better and the next chunk scores
  differently): set turn 0's threshold from turn-0 chunks; run the gated policy with
  the thresholds found so far to reach turn 1; set turn 1's threshold from those
  chunks; and so on, while a turn has at least ``calibration.min_per_turn`` chunks. From
  the first turn with fewer, the chunks of that turn and every later one are pooled
  (`TurnGroups`): the gate maps every turn past the last group to it, so that group
  holds the chunks of all the turns it decides. Reusing the last full turn's scores
  instead broke the rate there: the right chunks' PPL rises with the turn, and turn 3 of
  the README's job took over 0.65 [0.45, 0.83] at alpha 0.4 on turn 2's threshold
  (docs/testbed_results.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import sys
import time
from pathlib import Path

from atts.config import RunConfig, load_config, with_overrides
from atts.engines.sglang import ContextOverflow, EngineError, ServerDown
from atts.errors import run_guarded
from atts.method.conformal import CalibrationFile, key_turn, turn_key
from atts.method.policies import ATTS, POLICIES, ATTSParams, ProposingPolicy
from atts.runtime.context import SampleContext, SampleState, finished_reason
from atts.runtime.progress import Progress, stderr_bar
from atts.runtime.session import Session, chunking_of
from atts.tasks.datasets import load_from_config


def calibration_meta(cfg: RunConfig, scoring_prompt: str = "shared") -> dict:
    """Settings a calibration is only valid under; evaluate compares them (``--force``
    overrides). Each one changes the per-turn distribution of calibration scores (issue
    13 item 4): models and their tokenizers (the scored ids), chunking and its caps (the
    chunks and which turns are reached), both temperatures (draft chunks; target
    continuations shape later turns), the policy's mode and resampling (what follows a
    rejection), the dataset and split calibrated on, and the target's scoring prompt."""
    c = cfg.chunking
    p = cfg.policy.params
    return {
        "draft_model": cfg.draft.model, "target_model": cfg.target.model,
        "tokenizers": {"draft": tokenizer_identity(cfg.draft.tokenizer_path),
                       "target": tokenizer_identity(cfg.target.tokenizer_path)},
        "chunking": {"stop": list(c.stop), "max_tokens_per_chunk": c.max_tokens_per_chunk,
                     "max_turns": c.max_turns, "token_budget": c.token_budget},
        "draft_temperature": cfg.sampling.draft_temperature, "target_temperature": cfg.sampling.target_temperature,
        "top_p": cfg.sampling.top_p,
        "prompt": {"template": cfg.prompt.template, "system": cfg.prompt.system},
        "scoring_prompt": scoring_prompt,
        "mode": getattr(p, "mode", None), "max_resample": getattr(p, "max_resample", None),
        "dataset": cfg.dataset.name, "split": calibration_split(cfg),
    } | _score_kind(cfg)


def calibration_split(cfg: RunConfig) -> str:
    """The split calibrated on: ``calibration.split``, or with ``null`` the evaluated
    split itself (calibrate-on-test, chosen explicitly: `calibrated_on_test`)."""
    return cfg.calibration.split or cfg.dataset.split


def calibrated_on_test(cfg: RunConfig) -> bool:
    return cfg.calibration.split is None or cfg.calibration.split == cfg.dataset.split


def tokenizer_identity(path: str) -> str:
    """A tokenizer as its path (or hub id) and, where its ``tokenizer.json`` is a local
    file, the first 16 hex digits of that file's sha256: a re-tokenized model under the
    same path still differs."""
    f = Path(path) / "tokenizer.json"
    if f.is_file():
        return f"{path}#sha256:{hashlib.sha256(f.read_bytes()).hexdigest()[:16]}"
    return path


def _score_kind(cfg: RunConfig) -> dict:
    """What a calibration score is, for policies whose score is not the target's PPL of
    a draft chunk (atts_self, specreason_conformal): kept apart from ATTS's files."""
    cls = POLICIES[cfg.policy.name]
    kind = cls.calibration_kind(cfg.policy.params) if issubclass(cls, ProposingPolicy) else None
    return {"score": kind} if kind else {}


def calibration_policy(cfg: RunConfig):
    """The policy whose propose/resolve the calibration rolls out: the configured one
    if it has them (ATTS and its kin), else ATTS."""
    cls = POLICIES[cfg.policy.name]
    policy = cls(cfg.policy.params) if issubclass(cls, ProposingPolicy) else ATTS(policy_params(cfg))
    if getattr(policy.params, "pipeline", False):  # calibration runs in phases: no next-turn drafts
        policy.params = dataclasses.replace(policy.params, pipeline=False)
    return policy


def score_of(policy: ProposingPolicy, prop) -> float | None:
    """A proposal's nonconformity score (by default the scoring's PPL: ProposingPolicy)."""
    return policy.nonconformity(prop)


def policy_params(cfg: RunConfig):
    p = cfg.policy.params
    return p if hasattr(p, "alpha") and hasattr(p, "grouping") else ATTSParams()


async def capped(coros, max_in_flight: int | None) -> list:
    """``asyncio.gather(*coros)`` with at most ``max_in_flight`` running at once (config
    ``max_in_flight``; None: all); the others wait before they start."""
    slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None

    async def gated(c):
        if slots is None:
            return await c
        async with slots:
            return await c

    return await asyncio.gather(*(gated(c) for c in coros))


async def _first_chunk_scores(policy, roles, chunking, questions, k, progress,
                              max_in_flight: int | None = None) -> dict[str, list[float]]:
    bar = Progress(len(questions) * k, "calibrate (turn 0)", progress)
    scores: dict[str, list[float]] = {}
    failures = []

    async def one(q, r):
        ctx = SampleContext(SampleState(q, r), roles, chunking)
        try:
            s = score_of(policy, await policy.propose(ctx))
            if s is not None:
                scores.setdefault(q.id, []).append(s)
        except ServerDown:
            raise  # stops the calibration with its own message
        except EngineError as e:
            failures.append(str(e))
        bar.update({"status": "done", "steps": [], "correct": False})

    try:
        await capped([one(q, r) for q in questions for r in range(k)], max_in_flight)
    finally:
        bar.close()
    _check_failures(failures, len(questions) * k)
    return scores


def _check_failures(failures: list[str], total: int) -> None:
    if failures:
        print(f"atts.calibrate: {len(failures)}/{total} samples failed, e.g. {failures[0]}", file=sys.stderr)
        if len(failures) > 0.1 * total:
            raise EngineError("calibrate", f"{len(failures)} of {total} calibration samples failed")


async def _per_turn_scores(policy, roles, chunking, questions, k, params, min_per_turn: int,
                           progress: bool, max_in_flight: int | None = None) -> dict[str, list[float]]:
    ctxs = [SampleContext(SampleState(q, r), roles, chunking) for q in questions for r in range(k)]
    groups: dict[str, list[float]] = {}
    failures: list[str] = []
    bar = ChunkBar(progress)  # draft chunks proposed and scored, turn by turn
    try:
        await _per_turn_loop(policy, ctxs, chunking, params, min_per_turn, max_in_flight, groups, failures, bar,
                             progress)
    finally:
        bar.close()
    _check_failures(failures, len(ctxs))
    return groups


class ChunkBar:
    """tqdm bar of per-turn calibration: its total grows by each turn's active samples."""

    def __init__(self, enabled: bool):
        self.bar = stderr_bar(0, "calibrate", "chunk", enabled)

    def turn(self, t: int, n: int) -> None:
        self.bar.total += n
        self.bar.set_description(f"calibrate (turn {t})")
        self.bar.refresh()

    def update(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class TurnGroups:
    """The per-turn groups, built turn by turn. A turn with at least ``min_per_turn``
    scores gets its own group ``turn:t``, until the first turn with fewer; from then on
    the scores of every turn are pooled. The pool becomes group ``turn:T`` (T its first
    turn) once it holds ``min_per_turn``; if it never does, `finish` adds it to the last
    group. Either way the last group holds every score of the turns it covers (the gate
    maps later turns to it), so its rate holds over those turns pooled, in the mix of
    turns that the same process reaches at evaluation."""

    def __init__(self, min_per_turn: int):
        self.min_per_turn = min_per_turn
        self.groups: dict[str, list[float]] = {}
        self.tail_from: int | None = None  # the first turn with fewer than min_per_turn scores
        self.tail: list[float] = []

    def add(self, t: int, scores: list[float]) -> str | None:
        """Turn ``t``'s scores; the group they went to (None: the pool, not yet a group)."""
        if self.tail_from is None and len(scores) >= self.min_per_turn:
            self.groups[turn_key(t)] = list(scores)
            return turn_key(t)
        if self.tail_from is None:
            if t == 0:
                raise EngineError("calibrate", f"only {len(scores)} turn-0 scores; need {self.min_per_turn}")
            self.tail_from = t
        self.tail += scores
        if len(self.tail) >= self.min_per_turn:
            self.groups[turn_key(self.tail_from)] = list(self.tail)
            return turn_key(self.tail_from)
        return None

    def finish(self) -> dict[str, list[float]]:
        if self.tail and turn_key(self.tail_from) not in self.groups:
            last = turn_key(max(key_turn(k) for k in self.groups))
            self.groups[last] = self.groups[last] + self.tail
        return self.groups


async def _per_turn_loop(policy, ctxs, chunking, params, min_per_turn, max_in_flight, groups, failures, bar,
                         progress) -> None:
    built = TurnGroups(min_per_turn)
    for t in range(chunking.max_turns):
        active = [c for c in ctxs if c.state.status == "running"]
        if t == 0 and len(active) < min_per_turn:
            raise EngineError("calibrate", f"only {len(active)} calibration samples; need {min_per_turn}")
        if not active:
            break
        bar.turn(t, len(active))

        async def guarded(coro, ctx, count: bool = False):
            try:
                return await coro
            except ContextOverflow as e:
                ctx.state.status, ctx.state.error = "truncated", str(e)
            except ServerDown:
                raise
            except EngineError as e:
                ctx.state.status, ctx.state.error = "failed", str(e)
                failures.append(str(e))
            finally:
                if count:
                    bar.update()
            return None

        # phase 1: every active sample proposes its turn-t draft chunk, scored
        props = await capped([guarded(policy.propose(c), c, count=True) for c in active], max_in_flight)
        turn_scores = [s for s in (score_of(policy, p) for p in props if p is not None) if s is not None]
        group = built.add(t, turn_scores)
        policy.gate = CalibrationFile("per_turn", built.groups, {}, params.alpha).gate(params.alpha)
        # phase 2: resolve with the thresholds found so far, which moves samples to turn t+1
        live = [(c, p) for c, p in zip(active, props) if p is not None]
        await capped([guarded(policy.resolve(c, p), c) for c, p in live], max_in_flight)
        for c, _ in live:
            if c.state.status == "running":
                c.state.turn += 1
                reason = finished_reason(c.state, chunking)
                if reason:
                    c.state.status = "done"
        if progress:
            pooled = f"turns {built.tail_from}+ pooled, {len(built.tail)} chunks" if built.tail_from is not None else ""
            where = f"threshold {policy.gate.groups[group].quantile:.4f}" if group else "the last group's threshold"
            bar.bar.write(f"calibrate: turn {t}: {len(turn_scores)} chunks, {where}"
                          + (f" ({pooled})" if pooled else ""), file=sys.stderr)
    groups.update(built.finish())
    if progress and built.tail and turn_key(built.tail_from) not in built.groups:
        bar.bar.write(f"calibrate: turns {built.tail_from}+ ({len(built.tail)} chunks, under {min_per_turn}) "
                      f"added to the last group", file=sys.stderr)


async def calibrate_async(cfg: RunConfig, roles, *, limit: int | None = None, progress: bool = True) -> CalibrationFile:
    params = policy_params(cfg)
    split = calibration_split(cfg)
    questions = load_from_config(cfg.dataset, split=split, limit=limit or cfg.calibration.limit)
    k = cfg.calibration.samples_per_question or cfg.samples_per_question
    chunking = dataclasses.replace(chunking_of(cfg), phase="calibration")  # seeds salted by phase (issue 13 item 2)
    if params.grouping == "per_question" and split != cfg.dataset.split:
        print("atts.calibrate: note: per_question calibration keys scores by question; evaluate only the "
              "calibrated questions (the paper's setting: calibration.split = dataset.split)", file=sys.stderr)
    t0 = time.perf_counter()
    if params.grouping == "per_turn":
        scores = await _per_turn_scores(calibration_policy(cfg), roles, chunking, questions, k, params,
                                        cfg.calibration.min_per_turn, progress, cfg.max_in_flight)
        alpha = params.alpha
    else:
        by_q = await _first_chunk_scores(calibration_policy(cfg), roles, chunking, questions, k, progress,
                                         cfg.max_in_flight)
        scores = ({"all": [s for v in by_q.values() for s in v]} if params.grouping == "marginal"
                  else {f"q:{qid}": v for qid, v in by_q.items()})
        alpha = None
    meta = calibration_meta(cfg) | {
        "n_questions": len(questions), "samples_per_question": k, "wall_seconds": round(time.perf_counter() - t0, 2),
        "questions": [q.id for q in questions], "calibrated_on_test": calibrated_on_test(cfg),  # issue 13 item 2
    }
    return CalibrationFile(params.grouping, scores, meta, alpha)


async def _main_async(cfg: RunConfig, output: Path, limit: int | None, progress: bool) -> CalibrationFile:
    async with Session(cfg) as s:
        cal = await calibrate_async(cfg, s.roles, limit=limit, progress=progress)
    cal.save(output)
    return cal


def describe(cal: CalibrationFile, alpha: float) -> str:
    gate = cal.gate(alpha) if cal.grouping != "per_turn" else cal.gate(cal.alpha)
    lines = [f"calibration: grouping={cal.grouping} groups={len(cal.scores)} hash={cal.hash}"]
    last = max(gate.groups, key=key_turn) if cal.grouping == "per_turn" else None
    for k in list(gate.groups)[:12]:
        g = gate.groups[k]
        later = " (and every later turn)" if k == last else ""
        lines.append(f"  {k}{later}: n={g.n} threshold(alpha={g.alpha})={g.quantile:.4f}")
    return "\n".join(lines)


def command(args) -> int:
    """``atts calibrate`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        cfg = with_overrides(load_config(args.config), alpha=args.alpha, sets=args.set)
        out = Path(args.output) if args.output else cfg.calibration_path
        cal = asyncio.run(_main_async(cfg, out, args.limit, not args.no_progress))
        print(describe(cal, policy_params(cfg).alpha))
        print(f"wrote {out}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["calibrate", *sys.argv[1:]]))
