"""A simulated engine with the real engines' interface, replaying a trace.

`SimEngine.generate` / `SimEngine.score` take what `atts.runtime.runner` sends a real engine
(prompt ids, max_new_tokens, seed; prefix and chunk ids) and return `Generation` /
`Scoring` objects. What they contain comes from the trace (`Replay`): the chunk text and
its tokens, the PPL (as logprobs whose mean gives exactly that PPL). How long they take
comes from the simulated servers (`atts.sim.server`) on the virtual clock. A request's
identity (sample, turn, role, attempt) is read from its seed, which the runner derives
from exactly those (`atts.runtime.runner.request_seed`); a score request belongs to the sample
whose task sends it (a context variable set by that sample's first generation).

Token ids are synthetic but consistent (`SimPrompter`): a text is cut into paragraphs
(after each blank line), each paragraph has fixed ids, so equal texts have equal ids and
the encoding of ``a + b`` starts with that of ``a`` (as BPE does, away from the cut).
Counts are exact per paragraph with a real tokenizer, else ``len(text) / chars_per_token``.

Outside the trace (a policy that decides otherwise than the recorded run, or a target
that writes what was never recorded, e.g. `target_only`), chunks are synthesized by a
stated length model (`Synth`) and counted in `Replay.divergence`.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import math
import os
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from atts.engines.sglang import Generation, RequestStats, Scoring
from atts.tasks.prompts import messages, user_text
from atts.runtime.runner import request_seed
from atts.sim.server import Request, Server, block_hashes
from atts.sim.traces import Sample, Trace

_SAMPLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("atts_sim_sample", default=None)
_MASK = 0x7FFFFFFF


class TokenCounter:
    """Token counts of text pieces for one model family: exact with a tokenizer
    (``tokenizer_dir``), else ``round(len / chars_per_token)``."""

    def __init__(self, family: str, tokenizer_dir: str | None = None, chars_per_token: float = 2.8):
        self.family, self.chars_per_token = family, chars_per_token
        self.tok = None
        if tokenizer_dir:
            from transformers import AutoTokenizer  # heavy: only when exact counts are asked for

            self.tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self._n: dict[str, int] = {}
        self._cache_path: Path | None = None
        self._loaded = 0
        if tokenizer_dir:
            self._cache_path = _cache_file(tokenizer_dir)
            try:
                self._n = json.loads(self._cache_path.read_text())
                self._loaded = len(self._n)
            except (OSError, ValueError):
                self._n = {}

    def save(self) -> None:
        """Keep exact counts for the next replay of the same texts (a cache keyed by the
        tokenizer file's content hash; no effect on results)."""
        if self._cache_path is None or len(self._n) == self._loaded:
            return
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._n))
            tmp.replace(self._cache_path)
            self._loaded = len(self._n)
        except OSError:
            pass

    @property
    def exact(self) -> bool:
        return self.tok is not None

    def counts(self, pieces: list[str]) -> list[int]:
        missing = [p for p in dict.fromkeys(pieces) if p not in self._n]
        if missing:
            if self.tok is not None:
                enc = self.tok(missing, add_special_tokens=False)["input_ids"]
                self._n.update({p: len(e) for p, e in zip(missing, enc)})
            else:
                self._n.update({p: max(1, round(len(p) / self.chars_per_token)) if p else 0 for p in missing})
        return [self._n[p] for p in pieces]

    def prompt_tokens(self, q) -> int:
        if self.tok is not None and getattr(self.tok, "chat_template", None):
            text = self.tok.apply_chat_template(messages(q), add_generation_prompt=True, tokenize=False)
            return len(self.tok.encode(text, add_special_tokens=False))
        return sum(self.counts([user_text(q)])) + 16  # 16: chat-template tokens (system + roles), estimated


def _cache_file(tokenizer_dir: str) -> Path:
    """$ATTS_SIM_CACHE (default ~/.cache/atts-sim)/counts-<sha of tokenizer.json>.json"""
    tj = Path(tokenizer_dir) / "tokenizer.json"
    h = hashlib.sha256(tj.read_bytes()).hexdigest()[:16] if tj.is_file() else hashlib.sha256(
        str(Path(tokenizer_dir).resolve()).encode()).hexdigest()[:16]
    root = Path(os.environ.get("ATTS_SIM_CACHE") or Path.home() / ".cache" / "atts-sim")
    return root / f"counts-{h}.json"


def paragraphs(text: str) -> list[str]:
    """``text`` cut after each blank line ("\\n\\n"); the pieces concatenate to it."""
    parts = text.split("\n\n")
    out = [p + "\n\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


class SimPrompter:
    """The `atts.prompts.Prompter` interface with synthetic, consistent ids (see module docs)."""

    template = None
    system = None

    def __init__(self, counter: TokenCounter):
        self.counter = counter
        self.tokenizer_path = f"sim:{counter.family}"
        self._piece_ids: dict[str, list[int]] = {}
        self._text_ids: dict[str, list[int]] = {}
        self._prompts: dict[str, list[int]] = {}

    @staticmethod
    def _fresh(seed: int, n: int) -> list[int]:
        """n ids from a seed: consecutive integers (only whole prefixes are compared, by
        hash, so two texts share ids only if their pieces and order are equal)."""
        base = 1 + (seed & 0x3FFFFFFF)
        return list(range(base, base + n))

    def register(self, text: str, n: int) -> None:
        """A synthesized text of exactly ``n`` tokens."""
        self._text_ids[text] = self._fresh(hash((self.tokenizer_path, text)), n)

    def prompt_ids(self, q) -> list[int]:
        if q.id not in self._prompts:
            self._prompts[q.id] = self._fresh(hash((self.tokenizer_path, "prompt", q.id)), self.counter.prompt_tokens(q))
        return list(self._prompts[q.id])

    def encode_after(self, before: list[int], text: str) -> tuple[list[int], int]:
        return self.encode(text), 0  # synthetic ids: no word is cut at a chunk boundary

    def cut_word_ids(self, ids: list[int]) -> int:
        return 0

    def encode(self, text: str) -> list[int]:
        hit = self._text_ids.get(text)
        if hit is not None:
            return list(hit)
        pieces = paragraphs(text)
        missing = [p for p in pieces if p not in self._piece_ids]
        if missing:
            for p, n in zip(missing, self.counter.counts(missing)):
                self._piece_ids[p] = self._fresh(hash((self.tokenizer_path, p)), n)
        ids: list[int] = []
        for p in pieces:
            ids += self._piece_ids[p]
        if len(text) <= 8192:  # chunks: reused; long histories (text-mode prompts) are not kept
            self._text_ids[text] = ids
        return list(ids)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return ""

    def judge_ids(self, *a, **k):
        raise NotImplementedError("atts simulate does not replay judge prompts (specreason)")


@dataclass
class Synth:
    """Length model of chunks the trace does not hold (stated in the outputs).

    - a takeover the recorded run did not make: ``target_chunk_tokens`` (default: the
      trace's mean target chunk);
    - target_only: the target writes ``target_only_factor`` x the sample's kept tokens
      (draft and target chunks, in target tokens), in chunks of ``max_tokens``.
    """

    target_chunk_tokens: int
    target_only_factor: float = 1.0
    max_tokens: int = 500


@dataclass
class Replay:
    """Recorded outcomes by request identity, and the synthesized ones."""

    trace: Trace
    prompters: dict  # role -> SimPrompter
    synth: Synth
    seed: int = 0
    max_turns: int = 15
    target_only: bool = False
    divergence: dict = field(default_factory=lambda: defaultdict(int))

    def __post_init__(self):
        self.by_key: dict[str, Sample] = {s.key: s for s in self.trace.samples}
        self.gens = {(s.key, st.turn, st.role, st.attempt): st for s in self.trace.samples for st in s.steps
                     if st.kind == "generate"}
        self.scores = {(s.key, st.turn, st.attempt): st for s in self.trace.samples for st in s.steps
                       if st.kind == "score"}
        self.last_turn = {s.key: s.turns - 1 for s in self.trace.samples}
        self._seeds: dict[int, tuple] = {}
        self._pending: dict[str, dict[tuple, deque]] = defaultdict(lambda: defaultdict(deque))
        self._to_len: dict[str, int] = {}
        turns = self.max_turns + 2
        for s in self.trace.samples:
            qid = s.question_id
            for t in range(turns):
                for role in ("draft", "target"):
                    for a in range(4):
                        self._seeds[request_seed(self.seed, qid, s.repeat, t, role, a, phase="evaluation")] = (s.key, t, a)

    def identify(self, seed: int, role: str) -> tuple[str, int, int]:
        try:
            return self._seeds[seed]
        except KeyError:
            raise RuntimeError(f"atts simulate: a {role} request whose seed matches no sample, turn and attempt "
                               "(chunking seed or turn cap differ from the replay's)") from None

    def target_only_tokens(self, key: str) -> int:
        """L = factor x the sample's kept tokens in target tokens (see `Synth`)."""
        if key not in self._to_len:
            s, p = self.by_key[key], self.prompters["target"]
            kept = sum(p.count(st.text) for st in s.steps if st.kind == "generate")
            self._to_len[key] = max(1, round(self.synth.target_only_factor * kept))
        return self._to_len[key]

    def generation(self, key: str, turn: int, role: str, attempt: int) -> tuple[str, list[int], str]:
        """(text, the writer's token ids, finish) of a chunk."""
        p = self.prompters[role]
        if self.target_only and role == "target":
            total, m = self.target_only_tokens(key), self.synth.max_tokens
            n = max(0, min(m, total - turn * m))
            finish = "eos" if (turn + 1) * m >= total else "length"
            return self._synthetic(key, turn, role, attempt, n, finish)
        st = self.gens.get((key, turn, role, attempt))
        if st is not None:
            if role == "draft":
                sc = self.scores.get((key, turn, attempt))
                if sc is not None:
                    sig = _sig(self.prompters["target"].encode(st.text))
                    self._pending[key][sig].append(sc.ppl)
            return st.text, p.encode(st.text), st.finish
        if role == "draft":
            # past the trace's end: a pipelined look-ahead that the policy will discard (a
            # full chunk, as a real draft would write until cancelled), or, if a decision
            # diverged and it is kept, the sample's end
            self.divergence["draft_beyond_trace"] += 1
            return self._synthetic(key, turn, role, attempt, self.synth.max_tokens, "eos")
        if turn > self.last_turn[key]:
            self.divergence["target_beyond_trace"] += 1
            return "", [], "eos"
        self.divergence["target_unrecorded"] += 1
        finish = "eos" if turn >= self.last_turn[key] else "length"
        return self._synthetic(key, turn, role, attempt, self.synth.target_chunk_tokens, finish)

    def _synthetic(self, key, turn, role, attempt, n, finish) -> tuple[str, list[int], str]:
        text = f"[synthetic {key} turn {turn} {role} {attempt}: {n} tokens]"
        for pr in self.prompters.values():
            pr.register(text, n)
        return text, self.prompters[role].encode(text), finish

    def ppl(self, key: str | None, chunk_ids: list[int]) -> float:
        q = self._pending.get(key, {}).get(_sig(chunk_ids))
        if q:
            # the most recent generation with this content: a policy scores the chunk it has
            # just drawn; an older entry is a pipelined look-ahead that was discarded unscored
            # (a resample then drew the same text; popleft took the look-ahead's PPL)
            return q.pop()
        self.divergence["score_unrecorded"] += 1
        return 1.0  # a chunk never scored in the recorded run: the lowest PPL (accepted by a PPL test)


def _sig(ids: list[int]) -> tuple:
    return (len(ids), *ids[:6], *ids[-6:])


@dataclass
class RequestLog:
    role: str
    kind: str
    sample: str | None
    submitted: float
    started: float
    finished: float
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int


class SimEngine:
    """The engine interface of `atts.engines.SGLangEngine` (generate, score, counters,
    aclose), over simulated servers: a client-side cap of ``max_concurrency`` requests
    (the real engine's semaphore), a per-request overhead, then the least-loaded replica."""

    def __init__(self, role: str, servers: list[Server], replay: Replay, max_concurrency: int, overhead_s: float,
                 log: list):
        self.role, self.servers, self.replay = role, servers, replay
        self.settings = None
        self.context_length = None
        self._sem = asyncio.Semaphore(max_concurrency)
        self.overhead_s = overhead_s
        self.log = log
        self.counters = {"requests": 0, "retries": 0, "failures": 0}

    async def aclose(self) -> None:
        pass

    async def generate(self, input_ids: list[int], *, max_new_tokens: int, stop=None, temperature: float = 0.0,
                       top_p: float = 1.0, seed: int | None = None, top_logprobs: int | None = None) -> Generation:
        if top_logprobs:
            raise NotImplementedError("atts simulate does not replay top-logprob requests (specreason)")
        key, turn, attempt = self.replay.identify(seed, self.role)
        if _SAMPLE.get() is None:
            _SAMPLE.set(key)
        text, ids, finish = self.replay.generation(key, turn, self.role, attempt)
        if len(ids) > max_new_tokens:  # estimated counts may overshoot the recorded chunk's cap
            ids = ids[:max_new_tokens]
        stats = RequestStats("generate", self.role, asyncio.get_running_loop().time(), prompt_tokens=len(input_ids),
                             output_tokens=len(ids))
        await self._request("generate", key, input_ids, ids, max_new_tokens, stats)
        return Generation(text, ids, finish, None, stats)

    async def score(self, prefix_ids: list[int], chunk_ids: list[int]) -> Scoring:
        if not prefix_ids or not chunk_ids:
            raise ValueError("score needs a non-empty prefix and chunk")
        key = _SAMPLE.get()
        ppl = self.replay.ppl(key, chunk_ids)
        ids = list(prefix_ids) + list(chunk_ids)
        stats = RequestStats("score", self.role, asyncio.get_running_loop().time(), prompt_tokens=len(ids))
        await self._request("score", key, ids, [], 0, stats)
        return Scoring(list(chunk_ids), [-math.log(ppl)] * len(chunk_ids), stats)

    async def _request(self, kind: str, key, prompt: list[int], out: list[int], max_new: int,
                       stats: RequestStats) -> None:
        loop = asyncio.get_running_loop()
        t_q = loop.time()
        self.counters["requests"] += 1
        async with self._sem:
            t0 = loop.time()
            stats.queue_s = t0 - t_q
            stats.attempts = 1
            try:
                await asyncio.sleep(self.overhead_s)
                server = min(self.servers, key=Server.outstanding)
                hs = block_hashes(prompt)
                req = Request(kind, len(prompt), len(out) if kind == "generate" else 0, max(max_new, 1), hs,
                              block_hashes(prompt + out) if out else hs)
                await server.run(req)
                stats.cached_tokens = req.cached
                stats.url = server.name
            finally:
                stats.service_s = loop.time() - t0
        self.log.append(RequestLog(self.role, kind, key, t_q, t0, loop.time(), len(prompt), stats.cached_tokens,
                                   len(out)))


class TimedPolicy:
    """Wraps the project's policy (every decision is its own): records each sample's
    start (its first turn) and end in virtual time, and optionally caps the samples in
    flight (``cap``: a sample waits for a slot before its first request). The cap is the
    simulator's; the runner has no such hook yet (see docs/simulation.md)."""

    def __init__(self, inner, cap: int | None = None):
        self.inner = inner
        self.cap = asyncio.Semaphore(cap) if cap else None
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self._holding: set[str] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def begin(self, samples: list) -> None:
        self.inner.begin(samples)

    async def turn(self, ctx) -> None:
        key = ctx.state.key
        if key not in self.started:
            if self.cap is not None:
                await self.cap.acquire()
                self._holding.add(key)
            self.started[key] = asyncio.get_running_loop().time()
        await self.inner.turn(ctx)

    def on_sample_end(self, question, repeat: int) -> None:
        key = ctx_key(question.index, repeat)
        self.ended[key] = asyncio.get_running_loop().time()
        if key in self._holding:
            self._holding.discard(key)
            self.cap.release()
        self.inner.on_sample_end(question, repeat)


def ctx_key(question_index: int, repeat: int) -> str:
    return f"q{question_index:05d}-r{repeat:03d}"
