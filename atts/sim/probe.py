"""Fit a ``kind: linear`` profile by probing the servers themselves (``atts simulate-fit
--probe --config CFG``): the iteration costs of `atts.sim.hardware` measured one term at a
time, on idle servers, with requests whose prompts share no prefix (so the radix cache
serves none of them).

- decode: ``b`` streams at once (b = 1, 8, 32), each ``n1`` then ``n2`` new tokens; the
  difference of the two walls over ``n2 - n1`` is one decode iteration at batch b, free of
  prefill and request overhead; least squares of ``t(b) = step + seq * b``;
- prefill: one request of P prompt tokens and 1 new token, P = 128 and 1024; the slope is
  ``tok`` (seconds per prefill token), the intercept ``step + request_overhead``.

Why not regress each request's own service time on its own tokens (`atts.sim.fit`): on
a server batching many requests, a request's time is mostly other requests' work, so the
per-request regression confounds its terms (on the chain testbed it gave a 164 ms draft
request overhead and 3.9 ms per prefill token, and walls 2-5x the measured ones).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

DECODE_BATCHES = (1, 8, 32)
DECODE_TOKENS = (16, 80)
PREFILL_TOKENS = (128, 1024)


def fit_probe(decode_iteration_s: dict[int, float], prefill_s: dict[int, float]) -> dict:
    """Coefficients (seconds) from the probe's measurements: ``decode_iteration_s`` maps a
    batch size to one decode iteration's time, ``prefill_s`` a prompt length to a
    1-new-token request's time."""
    b = np.array(sorted(decode_iteration_s), dtype=float)
    t = np.array([decode_iteration_s[int(x)] for x in b])
    seq, step = np.polyfit(b, t, 1) if len(b) > 1 else (0.0, float(t[0]))
    step, seq = max(0.0, float(step)), max(0.0, float(seq))
    p = np.array(sorted(prefill_s), dtype=float)
    tp = np.array([prefill_s[int(x)] for x in p])
    tok, intercept = np.polyfit(p, tp, 1)
    return {"step": step, "seq": seq, "tok": max(0.0, float(tok)),
            "request_overhead": max(0.0, float(intercept) - step)}


def _prompt(rng: random.Random, n: int, vocab: int) -> list[int]:
    return [rng.randrange(10, vocab) for _ in range(n)]


async def _post(client: httpx.AsyncClient, url: str, ids: list[int], new: int) -> None:
    r = await client.post(url + "/generate", json={"input_ids": ids, "sampling_params": {
        "max_new_tokens": new, "temperature": 0, "ignore_eos": True}})
    r.raise_for_status()


async def probe_server(url: str, vocab: int, *, repeats: int = 3, context: int = 256, seed: int = 0) -> dict:
    """The probe's raw measurements of one idle server (medians of ``repeats``)."""
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=600, trust_env=False) as client:
        await _post(client, url, _prompt(rng, 32, vocab), 4)  # warm-up

        async def wall(prompts: list[list[int]], new: int) -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(_post(client, url, ids, new) for ids in prompts))
            return time.perf_counter() - t0

        decode = {}
        for b in DECODE_BATCHES:
            its = []
            for _ in range(repeats):
                n1, n2 = DECODE_TOKENS
                w1 = await wall([_prompt(rng, context, vocab) for _ in range(b)], n1)
                w2 = await wall([_prompt(rng, context, vocab) for _ in range(b)], n2)
                its.append((w2 - w1) / (n2 - n1))
            decode[b] = statistics.median(its)
        prefill = {p: statistics.median([await wall([_prompt(rng, p, vocab)], 1) for _ in range(repeats)])
                   for p in PREFILL_TOKENS}
    return {"decode_iteration_s": decode, "prefill_s": prefill}


def _vocab(model: str) -> int:
    cfg = Path(model) / "config.json"
    try:
        return int(json.loads(cfg.read_text())["vocab_size"])
    except (OSError, KeyError, ValueError):
        return 1000  # a hub id: ids below 1000 exist in every vocabulary


async def probe_profile(cfg, urls: dict[str, list[str]], uncertainty: float = 0.1) -> dict:
    """A ``kind: linear`` profile (YAML-ready dict) from probing each role's first server;
    KV capacity: the config's ``max_total_tokens`` (what atts passes to SGLang on CPU; 16384
    if unset)."""
    prof = {"name": "cpu_testbed_probed", "fitted_from": "probe (atts.sim.probe)", "roles": {}}
    for role in ("draft", "target"):
        mc = getattr(cfg, role)
        raw = await probe_server(urls[role][0], _vocab(mc.model))
        c = fit_probe(raw["decode_iteration_s"], raw["prefill_s"])
        prof["roles"][role] = {
            "kind": "linear", "step_ms": 1e3 * c["step"], "seq_ms": 1e3 * c["seq"], "ctx_ms": 0.0,
            "prefill_token_ms": 1e3 * c["tok"], "attn_ms": 0.0, "request_overhead_ms": 1e3 * c["request_overhead"],
            "kv_capacity_tokens": int(mc.max_total_tokens or 16384), "replicas": 1, "gpus": 1,
            "uncertainty": uncertainty,
            "probe": {"decode_iteration_ms": {int(b): 1e3 * v for b, v in raw["decode_iteration_s"].items()},
                      "prefill_request_ms": {int(p): 1e3 * v for p, v in raw["prefill_s"].items()}}}
    return prof
