#!/usr/bin/env python3
"""Measure the testbed's draft/target pair (the `chain` task) as served by real SGLang.

    .venv/bin/python scripts/measure_testbed_models.py --n 200 --json docs/testbed_models_measured.json
    .venv/bin/python scripts/measure_testbed_models.py --n 200 --repairs-only --dump-repairs repairs.json
    .venv/bin/python scripts/measure_testbed_models.py --summarize-dump repairs.json   # no servers

Starts both servers (one torch thread each) and measures, on the `chain` test split,
with the testbed config's chunking (fixed-size chunks of `--chunk` draft tokens, no stop
string, `--max-turns` cap) and sampling temperature:
- pass@1 of each model writing whole solutions (draft and target alone);
- the draft's chunked rollouts: chunk length in tokens and turns per sample (median,
  mean, share at the cap);
- for every draft chunk whose prefix is still right: does it add an error
  (`atts.tasks.reasoning.first_error`), and the target's PPL of it, scored through the
  runner's own `SampleContext` (draft text re-encoded with the target's tokenizer).
  AUROC of that PPL for chunks with an error against chunks without (pooled; per turn;
  and within turns, as the per-turn gate compares); also with a wrong round number
  counted as an error (``labels=True``: it changes no result);
- the largest share of calibration-split first-chunk PPLs that any single value holds,
  at the gate's resolution (exact float, and rounded to 1e-4);
- append mode: after the first wrong draft chunk, the target continues to the end; the
  share of continuations that end with the right answer (both readings of "wrong"), the
  same among errors that change the answer (`reasoning.error_washes_out`: many wrong
  values are forgotten by the end of a parity rule's cycle), and by the kind of the
  first error (a wrong value, the other branch, a closing paragraph, a count-down, a
  look-back with a wrong sum: `reasoning.first_error_kind`); how often the first chunk
  it writes (all that one ATTS takeover writes) corrects or looks back; how often its
  own whole solutions "correct" right text;
- append mode as ATTS runs it, with a perfect gate (`append_repair_one_takeover`): fresh
  draft rollouts taken over once, at the first wrong chunk, for one target chunk, then
  the draft to the end: the share that ends right (what append-mode ATTS can gain);
  and the cost of a false alarm (`append_harm_one_takeover`): the same once after the
  first right chunk, the share of target chunks that bring the sample's first error;
- the gate at `--alpha` on the calibration's first-chunk PPLs: the share of wrong chunks
  it takes over (recall) and of right ones (false alarms), and `accuracy_model`, the
  pass@1 those and the one-takeover repair predict for append-mode ATTS against what
  the goal (within 2 points of the target) needs;
- per-token decode cost of each model at batch 1 and 16 streams, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atts.engines.sglang import EngineSettings, SGLangEngine  # noqa: E402
from atts.method.conformal import ConformalCalibration  # noqa: E402
from atts.tasks.grading import extract_boxed  # noqa: E402
from atts.tasks.prompts import Prompter  # noqa: E402
from atts.serving.sglang import ServerGroup, ServerSpec  # noqa: E402
from atts.tasks import reasoning  # noqa: E402
from atts.tasks.datasets import Question  # noqa: E402
from atts.runtime.context import Chunking, Role, SampleContext, SampleState, finished_reason  # noqa: E402
from atts.runtime.summary import wilson_interval  # noqa: E402


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counted half."""
    if not pos or not neg:
        return float("nan")
    neg_sorted = sorted(neg)
    wins = 0.0
    for p in pos:
        lo, hi = bisect.bisect_left(neg_sorted, p), bisect.bisect_right(neg_sorted, p)
        wins += lo + 0.5 * (hi - lo)
    return wins / (len(pos) * len(neg))


def auroc_interval(pos: list[float], neg: list[float], reps: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of ``auroc`` (chunks resampled within each class)."""
    rng = random.Random(seed)
    vals = sorted(auroc(rng.choices(pos, k=len(pos)), rng.choices(neg, k=len(neg))) for _ in range(reps))
    return [vals[int(0.025 * reps)], vals[int(0.975 * reps) - 1]]


def share(k: int, n: int) -> dict:
    """A proportion with its 95% Wilson interval."""
    return {"k": k, "n": n, "rate": k / n if n else None, "interval": list(wilson_interval(k, n)) if n else None}


def question(p) -> Question:
    return Question(0, p.id, p.problem, p.answer, "chain")


def dist(xs: list[float]) -> dict:
    return {"n": len(xs), "median": statistics.median(xs) if xs else None,
            "mean": statistics.fmean(xs) if xs else None, "min": min(xs, default=None), "max": max(xs, default=None)}


def separation(chunks: list[dict], suffix: str) -> dict:
    """AUROC of the target's PPL for chunks that add an error against chunks that do not,
    over the chunks whose text before them is still right."""
    judged = [c for c in chunks if c["prefix_ok" + suffix]]
    wrong = [c["ppl"] for c in judged if c["error" + suffix]]
    right = [c["ppl"] for c in judged if not c["error" + suffix]]
    return {"n_right": len(right), "n_wrong": len(wrong), "error_share": len(wrong) / max(1, len(judged)),
            "auroc_target_ppl": auroc(wrong, right), "auroc_interval": auroc_interval(wrong, right),
            "median_ppl_right": statistics.median(right) if right else None,
            "median_ppl_wrong": statistics.median(wrong) if wrong else None,
            **by_turn(judged, suffix)}


def by_turn(judged: list[dict], suffix: str, last: int = 3) -> dict:
    """The same AUROC per turn (turns ``last`` and later pooled), and within turns: each
    wrong chunk compared only with the right chunks of its own turn, as the per-turn
    gate compares a chunk with its own turn's calibration (the pooled AUROC also counts
    pairs across turns, whose PPL levels differ)."""
    groups: dict = {}
    for c in judged:
        g = groups.setdefault(min(c["turn"], last), ([], []))
        g[0 if c["error" + suffix] else 1].append(c["ppl"])
    rows = {f"{t}+" if t == last else str(t): {"n_wrong": len(w), "n_right": len(r),
            "auroc": auroc(w, r) if w and r else None, "median_ppl_right": statistics.median(r) if r else None}
            for t, (w, r) in sorted(groups.items())}
    def within(gs) -> float | None:
        pairs = sum(len(w) * len(r) for w, r in gs)
        return sum(auroc(w, r) * len(w) * len(r) for w, r in gs if w and r) / pairs if pairs else None

    gs = list(groups.values())
    point = within(gs)
    rng, reps = random.Random(0), 1000  # 95% percentile bootstrap, chunks resampled within each turn and class
    boot = sorted(within([(rng.choices(w, k=len(w)), rng.choices(r, k=len(r))) for w, r in gs]) for _ in range(reps)) \
        if point is not None else None
    return {"by_turn": rows, "auroc_within_turn": point,
            "auroc_within_turn_interval": [boot[int(0.025 * reps)], boot[int(0.975 * reps) - 1]] if boot else None}


async def whole_solutions(engine, pr, problems, temperature: float, max_new: int) -> dict:
    """pass@1 of whole solutions, and how many of them "correct" a paragraph
    (`reasoning.is_correction`) although the text before it was right (false alarms)."""
    async def one(k, p):
        g = await engine.generate(pr.prompt_ids(question(p)), max_new_tokens=max_new, temperature=temperature, seed=k)
        paras = g.text.split(reasoning.PARAGRAPH)
        false_alarm = any(reasoning.is_correction(x) and reasoning.first_error(
            p, reasoning.PARAGRAPH.join(paras[:i]), complete=True) is None for i, x in enumerate(paras))
        return extract_boxed(g.text) == p.answer, false_alarm
    res = await asyncio.gather(*(one(k, p) for k, p in enumerate(problems)))
    return {**share(sum(r for r, _ in res), len(res)), "corrected_right_text": sum(f for _, f in res)}


async def rollouts(draft, target, pd, pt, problems, a, max_turns: int | None = None,
                   takeover: str | None = None):
    """Draft-only chunked rollouts (up to ``max_turns``, default the testbed's cap), each
    chunk scored by the target exactly as the runner scores it: the same `SampleContext`
    (draft text re-encoded after the target's view, a word the chunk boundary cut scored
    whole with the next chunk), and the same end test (`finished_reason`).

    ``takeover="first_error"``: append-mode ATTS with a perfect gate, once: after the
    first wrong draft chunk the target writes one chunk after it (as `ATTS.resolve`
    does), then the draft goes on to the end. Each sample records its text, whether it
    ended right and, when taken over, the first error's kind and washout, where the
    draft chunk taken over and the target's chunk start in the text, and the target's chunk;
    every sample records why it ended (`ended`: `finished_reason`'s, or "draft_empty").
    ``takeover="right_text"``: the same once after the first draft chunk whose text is
    right (what a gate's false alarm hands the target); the sample also records whether
    the target's chunk holds its first error (`brought_error`: with the draft chunk's
    cut last paragraph, which the target completes)."""
    if takeover not in (None, "first_error", "right_text"):
        raise ValueError(f"takeover must be None, 'first_error' or 'right_text', not {takeover!r}")
    roles = {"draft": Role("draft", draft, pd, a.temperature), "target": Role("target", target, pt, a.temperature)}
    chunking = Chunking(stop=(), max_tokens=a.chunk, max_turns=max_turns or a.max_turns,
                        token_budget=a.chunk * a.max_turns)
    chunks, samples = [], []

    async def one(k, p):
        ctx = SampleContext(SampleState(question(p), 0), roles, chunking)
        st, took, ended = ctx.state, None, None
        while True:
            g = await ctx.generate("draft")
            if not g.token_ids:
                ended = "draft_empty"
                break
            text = st.text
            s = await ctx.score(g)
            ctx.keep(g)
            st.turn += 1
            new_text, cut = st.text, g.finish == "length"
            row = {"q": k, "turn": st.turn - 1, "ppl": s.ppl, "tokens": len(g.token_ids),
                   "text_start": len(text), "text": new_text, "cut": cut}
            for suffix, labels in (("", False), ("_labels", True)):  # the two readings of an error
                row["prefix_ok" + suffix] = reasoning.first_error(p, text, complete=False, labels=labels) is None
                row["error" + suffix] = reasoning.first_error(p, new_text, complete=not cut, labels=labels) is not None
            chunks.append(row)
            if takeover and not took and row["prefix_ok"] and row["error"] == (takeover == "first_error") \
                    and not finished_reason(st, chunking):
                tg = await ctx.generate("target")  # one takeover chunk after the draft's, same turn
                took = {"kind": reasoning.first_error_kind(p, new_text, complete=not cut),
                        "washes_out": reasoning.error_washes_out(p, new_text, complete=not cut),
                        "chunk_at": len(text), "at": len(st.text), "target_text": tg.text, "target_finish": tg.finish}
                ctx.keep(tg)
                took["brought_error"] = not row["error"] and reasoning.first_error(
                    p, st.text, complete=tg.finish != "length") is not None
            ended = finished_reason(st, chunking)
            if ended:
                break
        samples.append({"q": k, "turns": st.turn, "correct": extract_boxed(st.text) == p.answer,
                        "capped": st.turn >= chunking.max_turns, "ended": ended, "took_over": took, "text": st.text})

    await asyncio.gather(*(one(k, p) for k, p in enumerate(problems)))
    return chunks, samples


async def repairs(target, pt, problems, chunks, a, suffix: str = "") -> tuple[dict, list[dict]]:
    """Append mode: after the first wrong draft chunk, the target writes the rest. The
    share that ends right, overall and by the kind of the first error; by kind also how
    many continuations wrote a correction paragraph (`reasoning.is_correction`) and how
    many came after the draft had closed the think block. Also each case (``--dump-repairs``)."""
    firsts = [c for c in chunks if c["prefix_ok" + suffix] and c["error" + suffix]]

    async def one(c):
        p = problems[c["q"]]
        g = await target.generate(pt.prompt_ids(question(p)) + pt.encode(c["text"]),
                                  max_new_tokens=a.chunk * a.max_turns, temperature=a.temperature, seed=c["q"])
        first_chunk = pt.tok.decode(g.token_ids[:a.chunk])  # what one ATTS takeover writes
        return {"q": c["q"], "kind": reasoning.first_error_kind(p, c["text"], complete=not c["cut"]),  # judged as the error was
                "washes_out": reasoning.error_washes_out(p, c["text"], complete=not c["cut"]), "cut": c["cut"],
                "right": extract_boxed(c["text"] + g.text) == p.answer,
                "wrote_a_correction": any(map(reasoning.is_correction, g.text.split(reasoning.PARAGRAPH))),
                "corrected_within_a_chunk": any(map(reasoning.is_correction, first_chunk.split(reasoning.PARAGRAPH))),
                "looked_back_within_a_chunk": any(x.lstrip().startswith(reasoning.LOOK_BACK_OPENINGS)
                                                  for x in first_chunk.split(reasoning.PARAGRAPH)),
                "after_think_closed": "</think>" in c["text"], "draft_text": c["text"], "continuation": g.text}

    cases = await asyncio.gather(*(one(c) for c in firsts))
    return repair_figures(cases, by_kind=not suffix), list(cases)


def repair_figures(cases: list[dict], by_kind: bool = True) -> dict:
    """The share of continuations that end right; with ``by_kind`` also ``answer_changing``,
    the same among the cases whose error does not wash out (`reasoning.error_washes_out`: carried on
    faithfully, it would end at the right answer anyway), the repairs that had something
    to repair; by kind also how many wrote a correction and came after a closed think block."""
    out = share(sum(c["right"] for c in cases), len(cases))
    if cases and "corrected_within_a_chunk" in cases[0]:  # a correction in the first chunk: what one takeover can do
        out["corrected_within_a_chunk"] = share(sum(c["corrected_within_a_chunk"] for c in cases), len(cases))
        out["looked_back_within_a_chunk"] = share(sum(c.get("looked_back_within_a_chunk", False) for c in cases), len(cases))
    if by_kind:  # not for the round-label reading: a wrong round number changes no answer
        changing = [c for c in cases if not c.get("washes_out")]
        out["answer_changing"] = share(sum(c["right"] for c in changing), len(changing))
        out["by_kind"] = {}
        for k in sorted({c["kind"] for c in cases}, key=str):
            of = [c for c in cases if c["kind"] == k]
            out["by_kind"][k] = {**share(sum(c["right"] for c in of), len(of)),
                                 "washes_out": sum(bool(c.get("washes_out")) for c in of),
                                 "right_when_the_answer_changes": sum(c["right"] and not c.get("washes_out") for c in of),
                                 "wrote_a_correction": sum(c["wrote_a_correction"] for c in of),
                                 "wrong_without_a_correction": sum(not c["right"] and not c["wrote_a_correction"]
                                                                   for c in of),
                                 "after_think_closed": sum(c["after_think_closed"] for c in of)}
    return out


def one_takeover_figures(samples: list[dict]) -> dict:
    """Of the samples taken over once at their first error (`rollouts(takeover="first_error")`),
    the share that ended right; also among errors that change the answer, and by kind."""
    took = [s for s in samples if s["took_over"]]
    changing = [s for s in took if not s["took_over"]["washes_out"]]
    out = {**share(sum(s["correct"] for s in took), len(took)),
           "answer_changing": share(sum(s["correct"] for s in changing), len(changing)), "by_kind": {}}
    for k in sorted({s["took_over"]["kind"] for s in took}, key=str):
        of = [s for s in changing if s["took_over"]["kind"] == k]
        out["by_kind"][str(k)] = share(sum(s["correct"] for s in of), len(of))
    return out


def harm_figures(samples: list[dict]) -> dict:
    """Of the samples taken over once after right text (`rollouts(takeover="right_text")`):
    the share whose first error the target's chunk brought (the cost of a gate's false
    alarm), and the share that ended right."""
    took = [s for s in samples if s["took_over"]]
    return {"brought_error": share(sum(s["took_over"]["brought_error"] for s in took), len(took)),
            "ended_right": share(sum(s["correct"] for s in took), len(took))}


def gate_figures(chunks: list[dict], calibration: list[float], alpha: float) -> dict:
    """The conformal gate at ``alpha`` on the first-chunk ``calibration`` PPLs (the
    runtime's `ConformalCalibration`, 1e-5 resolution), applied to every judged draft chunk
    (its text before it still right): the share of chunks that add an error it takes over
    (recall), of right chunks it takes over (false alarms), and of all judged chunks. The
    runtime calibrates each turn on its own; here every turn uses the first chunks' scores."""
    cal = ConformalCalibration(tuple(calibration), alpha, 1e-5)
    judged = [c for c in chunks if c["prefix_ok"]]
    wrong = [cal.takeover(c["ppl"]) for c in judged if c["error"]]
    right = [cal.takeover(c["ppl"]) for c in judged if not c["error"]]
    return {"alpha": alpha, "threshold_ppl": cal.quantile, "recall": share(sum(wrong), len(wrong)),
            "false_alarm": share(sum(right), len(right)), "takeover": share(sum(wrong) + sum(right), len(judged))}


def accuracy_model(out: dict) -> dict:
    """A first-order reading of append-mode ATTS's pass@1 from the measured figures: the
    draft's chunked rollouts end right with p0; a sample that ends wrong is saved when the
    gate takes over its first wrong chunk (recall) and that one takeover turns its
    answer right (`append_repair_one_takeover`, where the error changes the answer). It
    leaves out false alarms' harm (`append_harm_one_takeover`) and later takeovers' second
    chances. ``needed``: the recall x repair that would bring ATTS within 2 points of the
    target alone."""
    p0 = out["draft_chunked_pass@1"]["rate"]
    recall = out["gate_at_alpha"]["recall"]["rate"]
    repair = out["append_repair_one_takeover"]["answer_changing"]["rate"]
    goal = out["target_pass@1"]["rate"] - 0.02
    return {"draft_chunked_pass@1": p0, "recall": recall, "one_takeover_repair_answer_changing": repair,
            "predicted_atts_pass@1": p0 + (1 - p0) * recall * repair, "goal_pass@1": goal,
            "recall_x_repair": recall * repair, "recall_x_repair_needed": (goal - p0) / (1 - p0)}


def dump_repairs(a, cases: list[dict], out: dict) -> dict:
    if a.dump_repairs:
        Path(a.dump_repairs).write_text(json.dumps(cases, indent=1) + "\n")
    return out


async def decode_ms(url: str, ids: list[int], concurrency: int, n_tokens: int = 128, rounds: int = 2) -> float:
    """Wall milliseconds per generated token of one stream, ``concurrency`` streams at once."""
    payload = {"input_ids": ids, "sampling_params": {"max_new_tokens": n_tokens, "temperature": 0, "ignore_eos": True}}
    async with httpx.AsyncClient(timeout=600, trust_env=False) as client:
        (await client.post(url + "/generate", json=payload)).raise_for_status()  # warm-up
        t0 = time.perf_counter()
        for _ in range(rounds):
            for r in await asyncio.gather(*(client.post(url + "/generate", json=payload) for _ in range(concurrency))):
                r.raise_for_status()
        return 1000 * (time.perf_counter() - t0) / (rounds * n_tokens)


async def measure(urls: dict, a) -> dict:
    pd, pt = Prompter(a.draft), Prompter(a.target)
    test = reasoning.generate("test", a.n)
    calib = reasoning.generate("calibration", a.n_calibration)
    out: dict = {"n_test_problems": a.n, "chunk_tokens": a.chunk, "max_turns": a.max_turns, "temperature": a.temperature}
    # 64 streams a server, and a long timeout: a whole target solution (up to 1,920 tokens)
    # among 64 streams on one core can take over the engine's default 120 s, and a re-sent
    # request only adds to the load (a --n 400 run gave up after 5 such timeouts)
    settings = {"max_concurrency": 64, "timeout_s": 1800.0}
    async with SGLangEngine("draft", EngineSettings((urls["draft"],), **settings)) as d, \
            SGLangEngine("target", EngineSettings((urls["target"],), **settings)) as t:
        if a.repairs_only:  # the draft's chunked rollouts and the target's repairs, nothing else
            chunks, _ = await rollouts(d, t, pd, pt, test, a)
            out["append_repair"], cases = await repairs(t, pt, test, chunks, a)
            _, once = await rollouts(d, t, pd, pt, test, a, takeover="first_error")
            out["append_repair_one_takeover"] = one_takeover_figures(once)
            _, false_alarms = await rollouts(d, t, pd, pt, test, a, takeover="right_text")
            out["append_harm_one_takeover"] = harm_figures(false_alarms)
            return dump_repairs(a, cases, out)
        ids = pd.prompt_ids(question(test[0]))
        for conc in (1, 16):
            ld = await decode_ms(urls["draft"], ids, conc)
            lt = await decode_ms(urls["target"], pt.prompt_ids(question(test[0])), conc)
            out[f"decode_ms_per_token_conc{conc}"] = {"draft": ld, "target": lt, "target_over_draft": lt / ld}
        budget = a.chunk * a.max_turns
        # the two servers (one core each) at once: accuracy does not depend on the timing
        out["draft_pass@1"], out["target_pass@1"] = await asyncio.gather(
            whole_solutions(d, pd, test, a.temperature, budget), whole_solutions(t, pt, test, a.temperature, budget))
        chunks, samples = await rollouts(d, t, pd, pt, test, a)
        turns = [s["turns"] for s in samples]
        out["chunk_tokens_dist"] = dist([c["tokens"] for c in chunks])
        out["turns_per_sample"] = {**dist(turns), "share_at_cap": sum(s["capped"] for s in samples) / len(samples)}
        out["draft_chunked_pass@1"] = share(sum(s["correct"] for s in samples), len(samples))
        out["chunk_error_separation"] = separation(chunks, "")
        # the strict reading: a wrong round number with the right count-down and value is an error too
        out["chunk_error_separation_round_labels"] = separation(chunks, "_labels")
        (out["append_repair"], cases), (out["append_repair_round_labels"], _), (c_chunks, _) = await asyncio.gather(
            repairs(t, pt, test, chunks, a), repairs(t, pt, test, chunks, a, "_labels"),
            rollouts(d, t, pd, pt, calib, a, max_turns=1))  # calibration: first chunks only
        dump_repairs(a, cases, out)
        _, once = await rollouts(d, t, pd, pt, test, a, takeover="first_error")
        out["append_repair_one_takeover"] = one_takeover_figures(once)
        _, false_alarms = await rollouts(d, t, pd, pt, test, a, takeover="right_text")
        out["append_harm_one_takeover"] = harm_figures(false_alarms)
        first = [c["ppl"] for c in c_chunks if c["turn"] == 0]
        out["calibration_first_chunk_ppl"] = {
            **dist(first), "max_share_one_value_exact": max(Counter(first).values()) / len(first),
            "max_share_one_value_1e-4": max(Counter(round(x, 4) for x in first).values()) / len(first)}
        out["gate_at_alpha"] = gate_figures(chunks, first, a.alpha)
        out["accuracy_model"] = accuracy_model(out)
    return out


def summarize_dump(path: Path) -> dict:
    """`repair_figures` of a ``--dump-repairs`` file (problems regenerated from the test
    split by index; a dump from before ``washes_out`` was recorded is judged now)."""
    cases = json.loads(path.read_text())
    problems = reasoning.generate("test", max(c["q"] for c in cases) + 1)
    for c in cases:
        p = problems[c["q"]]
        # a dump from before "cut" was recorded: judge the last chunk as cut unless it
        # closed the solution (a boxed answer), as the runner's end test would
        cut = c.get("cut", "\\boxed{" not in c["draft_text"])
        c["washes_out"] = reasoning.error_washes_out(p, c["draft_text"], complete=not cut)
    return repair_figures(cases)


def first_errors_of_run(row_dir: Path) -> dict:
    """Where each sample of a finished run on the chain task (e.g. a bench row,
    ``results/bench/rows/atts@4``) made its first error: the role whose kept chunk holds
    it (`reasoning.first_error`, a chunk cut mid-paragraph judged without its last
    paragraph), and whether the sample still ended right; the target chunks (an ATTS
    row's takeovers) that came after right text, and those that brought the first error; for a
    draft's first error after a takeover, its kind and whether a look-back lies within
    the three paragraphs before it."""
    problems = {p.id: p for p in reasoning.generate("test", 1000)}
    c: Counter = Counter()
    for f in sorted((row_dir / "samples").glob("*.json")):
        rec = json.loads(f.read_text())
        p, kept = problems[rec["question_id"]], [s for s in rec["steps"] if s["kept"]]
        text, first, after_target = "", None, False
        for i, st in enumerate(kept):
            before, text = text, text + st["text"]
            right_before = reasoning.first_error(p, before, complete=False) is None
            if st["role"] == "target":
                c["target_chunks_after_right_text"] += right_before
            off = reasoning.first_error(p, text, complete=i == len(kept) - 1 or st["finish"] != "length")
            if first is None and off is not None:
                first = st["role"]
                c["target_chunks_that_brought_the_first_error"] += first == "target" and right_before
                if first == "draft" and after_target:
                    near = any(x.startswith(reasoning.LOOK_BACK_OPENINGS)
                               for x in text[:off].split(reasoning.PARAGRAPH)[-3:])
                    kind = reasoning.first_error_kind(p, text, complete=True)
                    c[f"draft_after_a_takeover: {kind}{', a look-back just before' if near else ''}"] += 1
            after_target |= st["role"] == "target"
        c["samples"] += 1
        c["correct"] += rec["correct"]
        c[f"first_error_by_{first}"] += 1
        c[f"first_error_by_{first}_and_correct"] += rec["correct"]
    return dict(sorted(c.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="test problems")
    ap.add_argument("--n-calibration", type=int, default=200, help="calibration problems (PPL ties)")
    ap.add_argument("--chunk", type=int, default=128, help="draft tokens per chunk (testbed.yaml)")
    ap.add_argument("--max-turns", type=int, default=15)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--alpha", type=float, default=0.4, help="the gate's level for `gate_at_alpha` (testbed.yaml's)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--dump-repairs", metavar="PATH", help="write each append-mode repair case (the draft's text "
                    "up to its first wrong chunk, the target's continuation, the error's kind, the outcome) here")
    ap.add_argument("--repairs-only", action="store_true", help="measure only the append-mode repairs")
    ap.add_argument("--summarize-dump", metavar="PATH", help="no servers: the repair figures of a --dump-repairs "
                    "file, with each error's washout judged again (`reasoning.error_washes_out`, test split)")
    ap.add_argument("--first-errors-of", nargs="+", metavar="ROW_DIR", help="no servers: where each sample of "
                    "these finished runs (e.g. bench rows) made its first error, the draft or a takeover")
    ap.add_argument("--draft", default=str(ROOT / "models/chain-draft"))
    ap.add_argument("--target", default=str(ROOT / "models/chain-target"))
    a = ap.parse_args()
    if a.first_errors_of:
        print(json.dumps({d: first_errors_of_run(Path(d)) for d in a.first_errors_of}, indent=2))
        return 0
    if a.summarize_dump:
        print(json.dumps(summarize_dump(Path(a.summarize_dump)), indent=2))
        return 0
    specs = [ServerSpec("draft", a.draft, context_length=4096, max_total_tokens=65536, cpu_threads=1),
             ServerSpec("target", a.target, context_length=4096, max_total_tokens=65536, cpu_threads=1)]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as logs, ServerGroup(specs, Path(logs)) as urls:
        res = asyncio.run(measure(urls, a))
    res["wall_seconds"] = round(time.time() - t0, 1)
    res["command"] = " ".join(["python", "scripts/measure_testbed_models.py", *sys.argv[1:]])
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
