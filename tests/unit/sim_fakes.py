"""Test support for the simulator tests: a recorded atts run made by the REAL runner and
ATTS policy against a deterministic fake engine, and small research-format fixtures
cut from the shared traces. (Imported by tests/unit/test_sim_*.py.)"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import math
import shutil
from pathlib import Path

from atts.method.conformal import CalibrationFile
from atts.tasks.datasets import Question
from atts.engines.sglang import Generation, RequestStats, Scoring
from atts.method.policies import ATTSParams, make_policy
from atts.runtime.runner import Chunking, Role, run_all
from atts.runtime.store import RunStore
from atts.testing import fakes

TRACES = "math500_r1llama8b_qwq32b.jsonl.gz"
CAL = "calibration_ppls_math500_r1llama8b_qwq32b.npy"


def _h(*parts) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def FakePrompter(name: str) -> fakes.FakePrompter:
    return fakes.FakePrompter(tokenizer_path=name)


class FakeEngine:
    """Chunks keyed by (prompt, seed), PPLs by (prefix, chunk); a seeded random latency."""

    def __init__(self, role: str, seed: int):
        self.role, self.seed = role, seed
        self.counters = {"requests": 0}

    async def generate(self, ids, *, seed=None, max_new_tokens=40, **kw):
        await asyncio.sleep((_h(self.seed, seed) % 1000) / 2e5)
        k = _h(self.role, tuple(ids), seed)
        n_steps = sum(1 for i in ids if i == ord("\n")) // 2
        if self.role == "target":
            text = f"t{k % 97}\n\n"
        elif n_steps >= 4 or k % 13 == 0:
            text = "The answer is \\boxed{4}." if k % 2 else ""
        else:
            text = ("BAD" if k % 3 == 0 else "ok") + f"{k % 89}\n\n"
        finish = "stop" if text.endswith("\n\n") else "eos"
        return Generation(text, [ord(c) for c in text], finish, "\n\n" if finish == "stop" else None,
                          RequestStats("generate", self.role, 0.0, output_tokens=len(text), prompt_tokens=len(ids),
                                       service_s=0.01))

    async def score(self, prefix, chunk):
        await asyncio.sleep((_h(self.seed, tuple(chunk)) % 1000) / 2e5)
        text = "".join(map(chr, chunk))
        base = 3.0 if "BAD" in text else 1.0
        ppl = base + (_h(tuple(prefix), tuple(chunk)) % 1000) / 1e4
        return Scoring(list(chunk), [-math.log(ppl)] * len(chunk),
                       RequestStats("score", self.role, 0.0, prompt_tokens=len(prefix) + len(chunk), service_s=0.005))


class _NoGrader:
    def grade(self, items):
        return [None] * len(items)


def make_atts_run(out: Path, mode: str = "append", max_resample: int = 0, pipeline: bool = True,
                  n_questions: int = 6, k: int = 4, seed: int = 0) -> Path:
    """A real ATTS run (atts.runtime.runner.run_all + atts.method.policies.ATTS) on fake engines, written
    like `atts.evaluate` writes it: manifest (config + calibration path), sample records,
    summary; calibration file beside it."""
    out.mkdir(parents=True, exist_ok=True)
    cal = CalibrationFile("marginal", {"all": [1.0 + i / 1e4 for i in range(0, 1000, 50)] + [3.05] * 8},
                          {"test": True})
    cal.save(out / "calibration.json")
    params = ATTSParams(alpha=0.45, mode=mode, grouping="marginal", max_resample=max_resample, pipeline=pipeline)
    policy = make_policy("atts", params, cal.gate(params.alpha))
    chunking = Chunking(("\n\n",), 40, 6, 10**6, 1.0, seed)
    questions = [Question(i, f"fake/{i}", f"problem {i}", "4", "arith") for i in range(n_questions)]
    store = RunStore(out)
    config = {"policy": {"name": "atts", **{f: getattr(params, f) for f in params.__dataclass_fields__}},
              "chunking": {"stop": ["\n\n"], "max_tokens_per_chunk": 40, "max_turns": 6, "token_budget": 10**6},
              "sampling": {"seed": seed, "top_p": 1.0}, "draft": {"max_concurrency": 64},
              "target": {"max_concurrency": 64}}
    store.open("h", {"config": config, "calibration": {"path": str(out / "calibration.json"), "hash": cal.hash}})

    async def go():
        roles = {r: Role(r, FakeEngine(r, seed), FakePrompter(f"fake-{r}"), 0.8) for r in ("draft", "target")}
        return await run_all(policy, questions, k, roles, chunking, store, _NoGrader(), progress=False)

    stats = asyncio.run(go())
    store.write("summary.json", {"wall_seconds": stats["wall_seconds"]})
    return out


def research_rows(shared_traces: Path, n: int = 32) -> list[dict]:
    with gzip.open(shared_traces / TRACES, "rt", encoding="utf-8") as f:
        rows = []
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def make_research_traces(shared_traces: Path, out: Path, n: int = 32) -> Path:
    """The first ``n`` samples of the shared traces as a .jsonl.gz, calibration beside it."""
    out.mkdir(parents=True, exist_ok=True)
    p = out / "traces.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        for r in research_rows(shared_traces, n):
            f.write(json.dumps(r) + "\n")
    shutil.copy(shared_traces / CAL, out / CAL)
    return p


def make_research_problems(shared_traces: Path, out: Path, n: int = 32) -> Path:
    """The same samples as research-code ``problem_XXXX.json`` files (full_history entries
    small / eval_ppl / eval_generate with their text in ``output``, no turn field)."""
    out.mkdir(parents=True, exist_ok=True)
    names = {"draft": "small", "target_score": "eval_ppl", "target_generate": "eval_generate"}
    for r in research_rows(shared_traces, n):
        hist = [{"model": names[s["model"]], "output": s.get("text"), "ppl": s.get("ppl")} for s in r["steps"]]
        (out / f"problem_{r['sample']:04d}.json").write_text(json.dumps({
            "problem_index": r["sample"], "question": r["question"], "duration_seconds": r["duration_seconds"],
            "full_history": hist}))
    shutil.copy(shared_traces / CAL, out / CAL)
    return out
