"""In-process fakes with the Engine / Prompter shapes the runner uses (no servers).

- ``FakePrompter``: prompt ids per question, text encoded as code points.
- ``ScriptedEngine``: ``generate`` pops scripted texts (``<eos>`` suffix = end of sequence);
  ``score`` gives PPL 9 to a chunk containing "BAD", else 1. Records every call.
- ``SeededEngine``: text from the request seed, PPL from the text: deterministic under
  concurrency.
- ``DeterministicEngine``: chunks keyed by (prompt, seed), PPLs by (prefix, chunk), and a
  seeded random latency so that concurrent requests interleave as on real servers."""

from __future__ import annotations

import asyncio
import hashlib
import math
import random

from atts.engines.sglang import EngineError, Generation, RequestStats, Scoring


def stable_int(*parts) -> int:
    """A 32-bit integer that depends only on ``parts`` (not on PYTHONHASHSEED)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


class FakePrompter:
    template = None

    def __init__(self, ids: list[int] | None = None, tokenizer_path: str = "fake"):
        self.ids = ids  # None: [7, question index]
        self.tokenizer_path = tokenizer_path

    def prompt_ids(self, q):
        return list(self.ids) if self.ids is not None else [7, q.index]

    def encode(self, text):
        return [ord(c) for c in text]

    def encode_after(self, before, text):
        return self.encode(text), 0  # one id per character: nothing to merge at a boundary

    def cut_word_ids(self, ids):
        return 0


class ScriptedEngine:
    """generate() pops scripted texts; score() returns a PPL encoded in the chunk text."""

    def __init__(self, role, texts):
        self.role, self.texts, self.calls = role, list(texts), []

    async def generate(self, ids, **kw):
        self.calls.append(("generate", list(ids)))
        text = self.texts.pop(0)
        finish = "eos" if text.endswith("<eos>") else "stop"
        text = text.replace("<eos>", "")
        return Generation(text, [ord(c) for c in text], finish, "\n\n" if finish == "stop" else None,
                          RequestStats("generate", self.role, 0.0, output_tokens=len(text)))

    async def score(self, prefix, chunk):
        self.calls.append(("score", list(prefix), list(chunk)))
        ppl = 9.0 if "BAD" in "".join(map(chr, chunk)) else 1.0
        return Scoring(list(chunk), [-math.log(ppl)] * len(chunk), RequestStats("score", self.role, 0.0))


class SeededEngine:
    """Text from the request seed, PPL from the text: deterministic under concurrency."""

    def __init__(self, role):
        self.role = role

    async def generate(self, ids, *, seed=None, **kw):
        await asyncio.sleep(0)
        text = f"s{seed % 997}\n\n"
        return Generation(text, [ord(c) for c in text], "stop", "\n\n", RequestStats("generate", self.role, 0.0))

    async def score(self, prefix, chunk):
        v = int("".join(map(chr, chunk)).strip()[1:])
        return Scoring(list(chunk), [-v / 1000] * len(chunk), RequestStats("score", self.role, 0.0))


class DeterministicEngine:
    """Chunks keyed by (prompt, seed), PPLs keyed by (prefix, chunk); random latency."""

    def __init__(self, role: str, rng: random.Random, fail_on: str | None = None):
        self.role, self.rng, self.fail_on = role, rng, fail_on
        self.generated = 0

    async def generate(self, ids, *, seed=None, **kw):
        await asyncio.sleep(self.rng.random() * 0.004)
        self.generated += 1
        k = stable_int(self.role, tuple(ids), seed)
        n_steps = sum(1 for i in ids if i == ord("\n")) // 2
        if self.role == "target":
            text = f"t{k % 97}\n\n"
        elif n_steps >= 3 or k % 11 == 0:
            text = "The answer is \\boxed{4}." if k % 2 else ""  # eos after an answer, or empty
        else:
            text = ("BAD" if k % 3 == 0 else "ok") + f"{k % 89}\n\n"
        finish = "stop" if text.endswith("\n\n") else "eos"
        return Generation(text, [ord(c) for c in text], finish, "\n\n" if finish == "stop" else None,
                          RequestStats("generate", self.role, 0.0, output_tokens=len(text)))

    async def score(self, prefix, chunk):
        await asyncio.sleep(self.rng.random() * 0.004)
        text = "".join(map(chr, chunk))
        if self.fail_on and self.fail_on in text:
            raise EngineError("target", "scripted failure")
        base = 3.0 if "BAD" in text else 1.0
        ppl = base + (stable_int(tuple(prefix), tuple(chunk)) % 1000) / 1e4
        return Scoring(list(chunk), [-math.log(ppl)] * len(chunk), RequestStats("score", self.role, 0.0))


class CountingEngine(DeterministicEngine):
    """DeterministicEngine with the `counters` a run's summary reports."""

    def __init__(self, role, rng):
        super().__init__(role, rng)
        self.counters = {"requests": 0}
