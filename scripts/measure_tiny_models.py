#!/usr/bin/env python3
"""Measure the tiny draft/target pair as served by real SGLang on this machine.

    .venv/bin/python scripts/measure_tiny_models.py [--n 200] [--json OUT]

Starts both servers, then prints:
- greedy exact-match accuracy of each model on the `arith` test split;
- how well the target's perplexity of the draft's steps separates wrong steps from
  right ones (AUROC; draft sampled at T=0.8 step by step, as ATTS runs it);
- per-token decode latency of each model (batch 1, and 16 concurrent streams), and the
  target/draft ratio.
A step "a op b = c" is right when it is the next operation of the expression as the
draft has rewritten it so far (products first, then left to right) and c is its value;
the final "The answer is \\boxed{N}." step is right when N is the current value.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atts.tasks import arith  # noqa: E402
from atts.tasks.datasets import Question  # noqa: E402
from atts.engines.sglang import EngineSettings, SGLangEngine  # noqa: E402
from atts.tasks.grading import extract_boxed  # noqa: E402
from atts.tasks.prompts import Prompter  # noqa: E402
from atts.serving.sglang import ServerGroup, ServerSpec  # noqa: E402

STEP = re.compile(r"^\s*(\d+) ([+\-*]) (\d+) = (-?\d+)\s*$")


def tokens_of(problem: str) -> list:
    return [int(t) if t.isdigit() else t for t in problem[len("Compute "):-1].split()]


def next_op(state: list) -> int:
    """Index of the operator the solver applies next: first '*', else the first op."""
    for i in range(1, len(state), 2):
        if state[i] == "*":
            return i
    return 1


def judge_step(state: list, text: str) -> tuple[bool, list]:
    """(is the step right, the state after applying the step as written)."""
    t = text.strip()
    if len(state) == 1:
        box = extract_boxed(t)
        return (box is not None and box.strip() == str(state[0])), state
    m = STEP.match(t)
    if not m:
        return False, state
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    i = next_op(state)
    x, o, y = state[i - 1], state[i], state[i + 1]
    true = {"+": x + y, "-": x - y, "*": x * y}[o]
    right = (a, op, b) == (x, o, y) and c == true
    # apply the step as written where it names the expected operands, else the intended op
    return right, state[: i - 1] + [c] + state[i + 2:]


def auroc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random wrong step > score of a random right step), ties half."""
    if not pos or not neg:
        return float("nan")
    wins = 0.0
    neg_sorted = sorted(neg)
    import bisect

    for p in pos:
        lo = bisect.bisect_left(neg_sorted, p)
        hi = bisect.bisect_right(neg_sorted, p)
        wins += lo + 0.5 * (hi - lo)
    return wins / (len(pos) * len(neg))


async def greedy_accuracy(engine: SGLangEngine, pr: Prompter, problems) -> float:
    async def one(p):
        g = await engine.generate(pr.prompt_ids(Question(0, p.id, p.problem, p.answer, "arith")),
                                  max_new_tokens=200, temperature=0.0)
        return extract_boxed(g.text) == p.answer

    res = await asyncio.gather(*(one(p) for p in problems))
    return sum(res) / len(res)


async def step_ppls(draft: SGLangEngine, target: SGLangEngine, pr: Prompter, problems, temperature: float):
    right, wrong = [], []

    async def one(k, p):
        ids = pr.prompt_ids(Question(0, p.id, p.problem, p.answer, "arith"))
        state = tokens_of(p.problem)
        for turn in range(8):
            g = await draft.generate(ids, max_new_tokens=40, stop=["\n\n"], temperature=temperature, seed=k * 100 + turn)
            if not g.token_ids:
                break
            s = await target.score(ids, g.token_ids)
            ok, state = judge_step(state, g.text)
            (right if ok else wrong).append(s.ppl)
            ids = ids + g.token_ids
            if g.finish != "stop" or extract_boxed(g.text) is not None:
                break

    await asyncio.gather(*(one(k, p) for k, p in enumerate(problems)))
    return right, wrong


async def decode_latency(url: str, pr: Prompter, concurrency: int, n_tokens: int = 64, rounds: int = 3) -> float:
    """Wall milliseconds per generated token of one stream, ``concurrency`` streams at once."""
    import httpx

    ids = pr.prompt_ids(Question(0, "x", "Compute 1 + 2 + 3.", "6", "arith"))
    payload = {"input_ids": ids, "sampling_params": {"max_new_tokens": n_tokens, "temperature": 0, "ignore_eos": True}}
    async with httpx.AsyncClient(timeout=300, trust_env=False) as client:
        (await client.post(url + "/generate", json=payload)).raise_for_status()  # warm-up
        t0 = time.perf_counter()
        for _ in range(rounds):
            rs = await asyncio.gather(*(client.post(url + "/generate", json=payload) for _ in range(concurrency)))
            for r in rs:
                r.raise_for_status()
        wall = time.perf_counter() - t0
    return 1000 * wall / (rounds * n_tokens)


async def measure(urls: dict, n: int, draft_path: str, target_path: str, speed_only: bool = False) -> dict:
    pd, pt = Prompter(draft_path), Prompter(target_path)
    problems = arith.generate("test", n)
    out = {"n_test_problems": n}
    async with SGLangEngine("draft", EngineSettings((urls["draft"],), 32)) as d, \
            SGLangEngine("target", EngineSettings((urls["target"],), 32)) as t:
        for conc in (1, 16):
            ld = await decode_latency(urls["draft"], pd, conc)
            lt = await decode_latency(urls["target"], pt, conc)
            out[f"decode_ms_per_token_conc{conc}"] = {"draft": ld, "target": lt, "target_over_draft": lt / ld}
        if speed_only:
            return out
        out["draft_greedy_accuracy"] = await greedy_accuracy(d, pd, problems)
        out["target_greedy_accuracy"] = await greedy_accuracy(t, pt, problems)
        for temp in (0.8, 0.0):
            right, wrong = await step_ppls(d, t, pd, problems, temp)
            key = "sampled_t0.8" if temp else "greedy"
            out[f"steps_{key}"] = {
                "n_right": len(right), "n_wrong": len(wrong), "draft_step_error_rate": len(wrong) / max(1, len(right) + len(wrong)),
                "auroc_target_ppl": auroc(wrong, right),
                "median_ppl_right": statistics.median(right) if right else None,
                "median_ppl_wrong": statistics.median(wrong) if wrong else None,
            }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="test problems")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--draft", default=str(ROOT / "models/tiny-draft"))
    ap.add_argument("--target", default=str(ROOT / "models/tiny-target"))
    ap.add_argument("--speed-only", action="store_true")
    args = ap.parse_args()
    specs = [ServerSpec("draft", args.draft, context_length=512, cpu_threads=1),
             ServerSpec("target", args.target, context_length=512, cpu_threads=1)]
    with tempfile.TemporaryDirectory() as logs, ServerGroup(specs, Path(logs)) as urls:
        res = asyncio.run(measure(urls, args.n, args.draft, args.target, args.speed_only))
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
