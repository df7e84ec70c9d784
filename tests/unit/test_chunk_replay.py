"""Issue 13 item 1: no shipped config may cut real solutions off.

Every config under configs/ replays the kept text of the 1,600 real research traces
(R1-Distill-Llama-8B + QwQ-32B, ../shared/reference/atts_traces) through its chunking
with the real Llama-3.1 tokenizer (the draft's vocabulary), and fails when more than 5%
of the solutions (traces whose kept text reaches a \\boxed{} answer) would stop at the
turn cap or the token budget before their answer.

The testbed configs (models/tiny-*, the synthetic `arith` task) are skipped: their
one-step chunks (stop at a blank line, 40 tokens) are made for 10-step arithmetic
answers in the tiny models' own character vocabulary; R1 text is not their workload,
and their own cut-off is measured on the testbed (summary stop_reasons).
"""

from __future__ import annotations

import gzip
import json

import pytest

from atts.config import ChunkingConfig, _read_yaml, build
from atts.tasks.grading import extract_boxed
from atts.tasks.datasets import SYNTHETIC
from atts.tasks.chunk_replay import (Replay, replay, replay_with_config, short_chunk_warning, tokenize)
from conftest import ROOT, SHARED

CONFIGS = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").rglob("*.yaml")
                 if p.name != "bench_targets.yaml")  # not a run config: atts bench's planning targets
MAX_CUT_OFF = 0.05
TRACES = SHARED / "reference" / "atts_traces" / "math500_r1llama8b_qwq32b.jsonl.gz"
LLAMA = SHARED / "reference" / "tokenizers" / "llama3_1"


# ----------------------------------------------------------------------------- mechanics, no shared data


class CharTokenizer:
    """One token per character: the replay's mechanics without a real vocabulary."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
        return {"input_ids": [ord(c) for c in text], "offset_mapping": [(i, i + 1) for i in range(len(text))]}


def _replay(text, **kw) -> Replay:
    args = {"stop": (), "max_tokens_per_chunk": 5, "max_turns": 100, "token_budget": 10_000} | kw
    return replay(text, CharTokenizer(), **args)


def test_chunks_cut_at_max_tokens_without_a_stop_string():
    r = _replay("abcdefghijkl")
    assert r.chunk_tokens == (5, 5, 2) and r.stop_reason == "end" and not r.cut_off


def test_a_chunk_ends_with_its_stop_string_included():
    r = _replay("ab\n\ncdefgh\n\ni", stop=("\n\n",), max_tokens_per_chunk=100)
    assert r.chunk_tokens == (4, 8, 1)


def test_a_stop_string_straddling_the_chunk_start_does_not_count():
    # "\n" ends chunk 1 (max 3 tokens); the second "\n" alone starts chunk 2: no match there
    r = _replay("ab\n\ncd\n\n", stop=("\n\n",), max_tokens_per_chunk=3)
    assert r.chunk_tokens == (3, 3, 2)


def test_the_earliest_completed_stop_string_wins():
    r = _replay("xxabcyy", stop=("abc", "b"), max_tokens_per_chunk=100)
    assert r.chunk_tokens[0] == 4  # "b" completes at index 3, before "abc" at 4


def test_answer_ends_the_sample_in_the_turn_it_closes():
    r = _replay("abc \\boxed{42} and more text after it", max_tokens_per_chunk=8)
    assert r.stop_reason == "answer" and r.turns == 2 and not r.cut_off


def test_turn_cap_and_budget_cut_off_before_the_answer():
    text = "x" * 40 + "\\boxed{1}"
    assert _replay(text, max_turns=3).stop_reason == "max_turns"
    r = _replay(text, token_budget=12)
    assert r.stop_reason == "token_budget" and r.kept_tokens == 15 and r.cut_off
    assert not _replay(text, max_turns=10).cut_off  # 49 tokens in 10 chunks of 5


def _record(stop_reason, sizes, status="done"):
    return {"status": status, "stop_reason": stop_reason,
            "steps": [{"turn": i, "kept": True, "n_tokens": n} for i, n in enumerate(sizes)]}


def test_short_chunk_warning_when_short_chunks_meet_the_turn_cap():
    cut = [_record("max_turns", [40] * 15) for _ in range(3)] + [_record("answer", [40] * 5) for _ in range(7)]
    w = short_chunk_warning(cut, max_tokens_per_chunk=500, max_turns=15)
    assert w and "3/10" in w and "median of 40" in w
    # full-size chunks at the cap: a long solution, not a chunking fault
    assert short_chunk_warning([_record("max_turns", [500] * 15)] * 3, 500, 15) is None
    # short chunks but (almost) no sample at the cap: fine
    ok = [_record("answer", [40] * 5) for _ in range(40)] + [_record("max_turns", [40] * 15)]
    assert short_chunk_warning(ok, 500, 15) is None
    assert short_chunk_warning([], 500, 15) is None


# ----------------------------------------------------------------------------- the real traces


@pytest.fixture(scope="module")
def real_solutions():
    """Every trace's kept text (draft chunks and target continuations in order, exactly
    concatenated), tokenized once with the real Llama-3.1 tokenizer."""
    if not TRACES.is_file():
        pytest.skip(f"../shared/reference/atts_traces not present ({TRACES.parent}); it exists in CI, not in a user's clone")
    if not LLAMA.is_dir():
        pytest.skip(f"../shared/reference/tokenizers not present ({LLAMA}); it exists in CI, not in a user's clone")
    from transformers import AutoTokenizer  # heavy: only where the shared files exist

    tok = AutoTokenizer.from_pretrained(str(LLAMA))
    with gzip.open(TRACES, "rt") as f:
        traces = [json.loads(line) for line in f]
    texts = ["".join(s.get("text") or "" for s in t["steps"] if s["model"] in ("draft", "target_generate"))
             for t in traces]
    solved = [tokenize(t, tok) for t in texts if extract_boxed(t) is not None]
    assert len(traces) == 1600 and len(solved) > 1400
    return solved


def cut_off_rate(solutions, chunking: ChunkingConfig) -> float:
    return sum(replay_with_config(s, None, chunking).cut_off for s in solutions) / len(solutions)


def _chunking(config: str) -> tuple[ChunkingConfig, dict]:
    data = _read_yaml(ROOT / "configs" / config)  # base files too (no dataset of their own)
    return build(ChunkingConfig, data.get("chunking") or {}, "chunking"), data


@pytest.mark.parametrize("config", CONFIGS)
def test_shipped_config_does_not_cut_real_solutions_off(config, real_solutions):
    chunking, data = _chunking(config)
    if (data.get("dataset") or {}).get("name") in SYNTHETIC or str((data.get("draft") or {}).get("model")).startswith("models/"):
        pytest.skip(f"{config}: a CPU testbed config (its own synthetic task and vocabulary; real R1 traces are not "
                    f"its workload: test_testbed_chunking replays its own task)")
    rate = cut_off_rate(real_solutions, chunking)
    assert rate <= MAX_CUT_OFF, (f"{config}: chunking {chunking} cuts {rate:.1%} of {len(real_solutions)} real "
                                 f"solutions off before their answer (limit {MAX_CUT_OFF:.0%})")


def test_the_old_blank_line_paper_chunking_fails_the_check(real_solutions):
    """The paper configs before issue 13: stop at a blank line, 500 tokens, 15 turns."""
    old = ChunkingConfig(stop=("\n\n",), max_tokens_per_chunk=500, max_turns=15, token_budget=16384)
    rate = cut_off_rate(real_solutions, old)
    assert rate > 0.5  # measured 64%
    new = ChunkingConfig(stop=(), max_tokens_per_chunk=500, max_turns=15, token_budget=16384)
    assert cut_off_rate(real_solutions, new) <= MAX_CUT_OFF  # measured 4.6%: the research run's 5% at the cap


def test_blank_line_chunks_are_short_on_real_text(real_solutions):
    """REAL_WORKLOAD.md: ~12 blank-line paragraphs per 500 tokens; the warning's premise."""
    sizes = [n for s in real_solutions[:200] for n in replay(s, stop=("\n\n",), max_tokens_per_chunk=500,
                                                                  max_turns=10**6, token_budget=10**9).chunk_tokens]
    sizes.sort()
    assert sizes[len(sizes) // 2] < 500 * 0.25
