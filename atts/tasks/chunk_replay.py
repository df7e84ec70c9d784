"""Replay a finished solution's text through a config's chunking, and warn at run time
when the chunking cuts samples off.

`replay` answers: had one model written this exact text under ``chunking`` (stop
strings, ``max_tokens_per_chunk``, ``max_turns``, ``token_budget``), after how many
turns would the runner have stopped, and would it have stopped before the answer?
It mirrors the runtime exactly where the runtime is deterministic:

- a chunk is at most ``max_tokens_per_chunk`` tokens of the writer's tokenizer, and ends
  at the first token whose text completes a stop string lying wholly inside the chunk
  (SGLang checks stop strings against the request's own output, and returns the chunk
  with the stop string included: ``no_stop_trim``, `atts.engines.SGLangEngine`);
- after every turn `atts.runner.finished_reason` decides, in its order: an answer in
  ``\\boxed{}`` ends the sample ("answer"), then the turn cap ("max_turns"), then the
  kept-token budget ("token_budget").

One chunk per turn: the replay is the single-writer case (``draft_only``,
``target_only``, an ATTS turn without takeover). An append-mode takeover keeps two
chunks in one turn, so the replay's turn count is an upper bound for ATTS, and exact
for target-only, the baseline that must not be cut off.

What it cannot mirror: the model's own sampled token ids. The replay tokenizes the final
text in one piece; a model that wrote it chunk by chunk may have split a chunk boundary
differently (a token or two per chunk). The measured cut-off rates are far from the
5% line either way (tests/unit/test_chunk_replay.py).
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass

from atts.tasks.grading import extract_boxed
from atts.records import is_complete


@dataclass(frozen=True)
class Replay:
    """The outcome of replaying one text."""

    turns: int  # turns the runner would have run
    stop_reason: str  # answer | end (text exhausted, no answer) | max_turns | token_budget
    kept_tokens: int  # tokens kept when it stopped
    total_tokens: int  # tokens of the whole text
    chunk_tokens: tuple[int, ...]  # each turn's chunk length

    @property
    def cut_off(self) -> bool:
        """Stopped by the turn cap or the budget before the text's end."""
        return self.stop_reason in ("max_turns", "token_budget")


@dataclass(frozen=True)
class TokenizedText:
    """A text with what a replay needs of it, computed once per tokenizer: each token's
    end offset in the text (characters) and where its first answer closes."""

    text: str
    ends: tuple[int, ...]
    answer_end: int | None


def tokenize(text: str, tokenizer) -> TokenizedText:
    """Token end offsets from the fast tokenizer's offset mapping (a byte-level token
    holding part of a multi-byte character ends where that character ends)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends, last = [], 0
    for _, e in enc["offset_mapping"]:
        last = max(last, e)  # offsets never go backwards
        ends.append(last)
    return TokenizedText(text, tuple(ends), _answer_end(text))


def replay(text: str | TokenizedText, tokenizer=None, *, stop: tuple[str, ...] | list[str],
           max_tokens_per_chunk: int, max_turns: int, token_budget: int) -> Replay:
    """Replay ``text`` (or a `tokenize`d text, to replay it under several chunkings)
    through the chunking (see the module docstring)."""
    tt = text if isinstance(text, TokenizedText) else tokenize(text, tokenizer)
    ends = tt.ends
    n = len(ends)
    starts = (0,) + ends[:-1]  # a chunk starting at token i starts at character starts[i]
    # every stop-string occurrence, as (start, end) character positions, sorted
    hits = sorted((i, i + len(s)) for s in stop if s for i in _find_all(tt.text, s))
    pos, turns, sizes = 0, 0, []
    while True:
        if pos >= n:
            return Replay(turns, "end", pos, n, tuple(sizes))
        end = min(n, pos + max_tokens_per_chunk)  # the chunk is tokens [pos, end)
        cut = _first_stop_token(hits, starts[pos], ends, pos, end)
        if cut is not None:
            end = cut + 1
        sizes.append(end - pos)
        pos, turns = end, turns + 1
        # atts.runner.finished_reason, in its order (no eos: the text ends instead)
        if tt.answer_end is not None and ends[pos - 1] >= tt.answer_end:
            return Replay(turns, "answer", pos, n, tuple(sizes))
        if pos >= n:
            return Replay(turns, "end", pos, n, tuple(sizes))
        if turns >= max_turns:
            return Replay(turns, "max_turns", pos, n, tuple(sizes))
        if pos >= token_budget:
            return Replay(turns, "token_budget", pos, n, tuple(sizes))


def replay_with_config(text: str | TokenizedText, tokenizer, chunking) -> Replay:
    """`replay` under an `atts.config.ChunkingConfig`."""
    return replay(text, tokenizer, stop=tuple(chunking.stop), max_tokens_per_chunk=chunking.max_tokens_per_chunk,
                  max_turns=chunking.max_turns, token_budget=chunking.token_budget)


def _find_all(text: str, s: str) -> list[int]:
    out, i = [], text.find(s)
    while i >= 0:
        out.append(i)
        i = text.find(s, i + 1)  # overlapping occurrences too ("\n\n\n" holds two "\n\n")
    return out


def _first_stop_token(hits: list[tuple[int, int]], chunk_start: int, ends: list[int], lo: int, hi: int) -> int | None:
    """The first token index in [lo, hi) whose end completes a stop string that starts at
    or after ``chunk_start``; None if the chunk holds none. ``hits``: (start, end) of
    every occurrence, sorted."""
    best = None
    for s, e in hits[bisect.bisect_left(hits, (chunk_start, -1)):]:
        if best is not None and s >= best:
            break  # later occurrences end later still
        best = e if best is None else min(best, e)
    if best is None:
        return None
    j = bisect.bisect_left(ends, best, lo, hi)  # first token ending at or after the stop string's end
    return j if j < hi else None


def _answer_end(text: str) -> int | None:
    """The character position where the text's first complete ``\\boxed{}`` answer closes:
    the runner stops after the turn whose kept text first has one (`extract_boxed`)."""
    if extract_boxed(text) is None:
        return None
    lo, hi = 1, len(text)
    while lo < hi:  # the shortest prefix with a complete box (extract_boxed is monotone in the prefix)
        mid = (lo + hi) // 2
        if extract_boxed(text[:mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ----------------------------------------------------------------------------- run-time warning

SHORT_CHUNK_FRACTION = 0.25  # "far below": median chunk under a quarter of max_tokens_per_chunk
TURN_CAP_FRACTION = 0.05  # samples at the turn cap: more than the real traces' 5%


def short_chunk_warning(records: list[dict], max_tokens_per_chunk: int, max_turns: int) -> str | None:
    """A one-line warning when the chunking cuts samples off: more than 5% of finished
    samples stopped at the turn cap (``stop_reason == "max_turns"``) while their kept
    chunks are short (median under a quarter of ``max_tokens_per_chunk``: a stop string
    ends them long before the size cap). None when the run looks fine.

    ``records``: the sample records of `atts.runner.sample_record` (their ``steps``).
    The measured case: a blank-line stop string on real R1 text ends chunks after about
    40 tokens (12 paragraphs per 500 tokens), so a 15-turn cap meant for 500-token
    chunks stops nearly every sample without an answer."""
    finished = [r for r in records if is_complete(r)]
    if not finished:
        return None
    capped = sum(r.get("stop_reason") == "max_turns" for r in finished)
    sizes = [s["n_tokens"] for r in finished for s in r.get("steps", ())
             if s.get("kept") and isinstance(s.get("n_tokens"), int)]
    if not sizes or capped <= TURN_CAP_FRACTION * len(finished):
        return None
    median = statistics.median(sizes)
    if median >= SHORT_CHUNK_FRACTION * max_tokens_per_chunk:
        return None
    return (f"chunking cuts samples off: {capped}/{len(finished)} samples hit the {max_turns}-turn cap while kept "
            f"chunks end at a median of {median:.0f} tokens (max_tokens_per_chunk {max_tokens_per_chunk}); "
            "a stop string ends them early: drop chunking.stop or raise chunking.max_turns")
