"""Issue 13 item 5: two real vocabularies and their real chat templates, no servers.

The paper's draft writes in Llama-3.1's vocabulary (R1-Distill-Llama-8B) and its target
reads Qwen's (QwQ-32B). With the real tokenizer files in ../shared/reference/tokenizers
(skipped where absent) this checks atts's own prompt code (atts/prompts.py) and the
runner's history (atts/runner.py SampleContext): prompts from both templates, Llama
chunks cut anywhere (mid-word, mid-expression, mid multi-byte character) and
re-encoded for the Qwen target, the scoring prompt being a prefix of the generation
prompt, and judge prompts whose assistant turn holds the reasoning verbatim."""

from __future__ import annotations

import pytest

from atts.tasks.datasets import Question
from atts.engines.sglang import Generation, RequestStats
from atts.tasks.prompts import Prompter, user_text
from atts.runtime.runner import Chunking, Role, SampleContext, SampleState
from conftest import SHARED

TOK = SHARED / "reference" / "tokenizers"
Q = Question(index=0, id="q0", problem="If $x^2 = 16$ and $x < 0$, what is $\\frac{3}{4}x$? (π ≈ 3.14, “quoted”)",
             answer="-3", kind="math")
MC = Question(index=1, id="q1", problem="Which is prime?", answer="B", kind="mc", choices=("4", "5", "6", "8"))
# R1-like reasoning: blank-line paragraphs, LaTeX, a self-check, and characters that
# Llama-3 writes in several tokens (🙂 is 2 Llama tokens, 1 Qwen token; 龘 is 2 in both)
TEXT = ("Okay, so I need to find $\\frac{3}{4}x$ where $x^2 = 16$ and $x < 0$.\n\n"
        "Since $x<0$, $x = -4$. Then $\\frac{3}{4}\\cdot(-4) = -3$ 🙂.\n\n"
        "Wait, let me double-check the recomputation: $\\frac{3}{4} \\times 4 = 3$, so the sign gives −3. 龘\n\n"
        "So the answer is $\\boxed{-3}$.")


@pytest.fixture(scope="module")
def llama() -> Prompter:
    if not (TOK / "llama3_1").is_dir():
        pytest.skip(f"../shared/reference/tokenizers not present ({TOK}); it exists in CI, not in a user's clone")
    return Prompter(str(TOK / "llama3_1"))


@pytest.fixture(scope="module")
def qwen() -> Prompter:
    if not (TOK / "qwen3").is_dir():
        pytest.skip(f"../shared/reference/tokenizers not present ({TOK}); it exists in CI, not in a user's clone")
    return Prompter(str(TOK / "qwen3"))


# ----------------------------------------------------------------------------- prompts


def test_llama_prompt_from_its_real_template(llama):
    ids = llama.prompt_ids(Q)
    bos = llama.tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert ids[0] == bos and ids.count(bos) == 1  # the template's BOS, not a second from encode
    assert llama.decode(ids) == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a math expert."
                                 "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" + user_text(Q) +
                                 "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert ids.count(llama.tok.convert_tokens_to_ids("<|eot_id|>")) == 2  # special tokens are single ids


def test_qwen_prompt_from_its_real_template(qwen):
    ids = qwen.prompt_ids(Q)
    assert qwen.decode(ids) == ("<|im_start|>system\nYou are a math expert.<|im_end|>\n<|im_start|>user\n"
                                + user_text(Q) + "<|im_end|>\n<|im_start|>assistant\n")
    assert ids.count(qwen.tok.convert_tokens_to_ids("<|im_start|>")) == 3
    mc = qwen.decode(qwen.prompt_ids(MC))
    assert "A) 4\nB) 5\nC) 6\nD) 8" in mc and "letter of your final choice" in mc


# ----------------------------------------------------------------------------- draft chunks for a Qwen target


def _ctx(llama, qwen) -> SampleContext:
    roles = {"draft": Role("draft", None, llama, 0.8), "target": Role("target", None, qwen, 0.8)}
    return SampleContext(SampleState(Q, 0), roles, Chunking((), 500, 15, 100_000))


def _gen(p: Prompter, role: str, ids: list[int]) -> Generation:
    """A chunk as a server returns it: its ids and their text decoded on their own (a
    multi-byte character cut at the chunk's end or start shows as U+FFFD)."""
    return Generation(p.tok.decode(ids, skip_special_tokens=True), list(ids), "length", None,
                      RequestStats("generate", role, 0.0))


def _split_chars(llama, text: str) -> list[int]:
    """Token indices that cut a multi-byte character (the prefix decodes to U+FFFD)."""
    ids = llama.encode(text)
    return [i for i in range(1, len(ids)) if llama.tok.decode(ids[:i]).endswith("\ufffd")]


def _cuts(llama, text: str) -> list[int]:
    """Chunk boundaries (token indices) in the middle of 🙂 and 龘 (two Llama tokens
    each), of a LaTeX expression (after ``\\frac``) and of a word, plus every 7 tokens."""
    ids = llama.encode(text)
    pieces = [llama.tok.decode(ids[:i]) for i in range(len(ids) + 1)]
    def inside(needle: str) -> int:
        at = text.index(needle)
        return next(i for i, s in enumerate(pieces) if at < len(s.rstrip("\ufffd")) < at + len(needle) - 1)

    mid_word, mid_expr = inside("recomputation"), inside("\\frac{3}{4}\\cdot(-4)")
    cuts = set(range(7, len(ids), 7)) | set(_split_chars(llama, text)) | {mid_word, mid_expr}
    return sorted(c for c in cuts if 0 < c < len(ids))


def test_llama_chunks_cut_anywhere_round_trip_for_a_qwen_target(llama, qwen):
    ids = llama.encode(TEXT)
    cuts = _cuts(llama, TEXT)
    assert _split_chars(llama, TEXT)  # 龘 (two Llama tokens) is cut
    ctx = _ctx(llama, qwen)
    prompt = qwen.prompt_ids(Q)
    previous_scoring = prompt
    for lo, hi in zip([0] + cuts, cuts + [len(ids)]):
        g = _gen(llama, "draft", ids[lo:hi])
        scoring, start = ctx.with_chunk(ctx.scoring_prefix_ids("target"), g, "target")
        assert ctx.request_ids("target", after=g) == scoring  # append mode: scoring prompt = generation prompt
        assert scoring[:start] == previous_scoring[:start]  # every earlier one is its prefix, up to a word the boundary cut (re-encoded whole)
        previous_scoring = scoring
        ctx.keep(g)
        ctx.state.turn += 1
    assert ctx.state.text == TEXT and "\ufffd" not in ctx.state.text
    assert ctx.prefix_ids("draft")[len(llama.prompt_ids(Q)):] == ids  # the draft continues from its exact ids
    target_view = ctx.prefix_ids("target")[len(prompt):]
    assert qwen.tok.decode(target_view) == TEXT  # the target reads the same text, no U+FFFD
    assert target_view == qwen.encode(TEXT)  # tokenized as a whole: no word split where a chunk cut it
    assert "\ufffd" not in "".join(s.text for s in ctx.state.segments)


def test_a_takeover_after_a_cut_character_drops_only_its_orphaned_bytes(llama, qwen):
    """The draft's chunk ends inside 龘; the target (Qwen) continues from the text without
    the half character (the token holding its first bytes), and the kept text holds no
    U+FFFD."""
    ids = llama.encode("Then -3 龘 ok")
    split = _split_chars(llama, "Then -3 龘 ok")[0]  # inside 龘
    ctx = _ctx(llama, qwen)
    ctx.keep(_gen(llama, "draft", ids[:split]))
    assert ctx.state.segments[-1].held == 1 and ctx.state.text == llama.tok.decode(ids[:split - 1])
    ctx.keep(_gen(qwen, "target", qwen.encode(". So -3.")))
    assert ctx.state.text == llama.tok.decode(ids[:split - 1]) + ". So -3." and "\ufffd" not in ctx.state.text
    assert qwen.tok.decode(ctx.prefix_ids("target")[len(qwen.prompt_ids(Q)):]) == ctx.state.text


def test_real_trace_text_round_trips_in_500_token_chunks(llama, qwen, shared_traces):
    import gzip
    import json

    with gzip.open(shared_traces / "math500_r1llama8b_qwq32b.jsonl.gz", "rt") as f:
        trace = json.loads(next(f))
    text = "".join(s.get("text") or "" for s in trace["steps"] if s["model"] in ("draft", "target_generate"))
    ids = llama.encode(text)
    ctx = _ctx(llama, qwen)
    for lo in range(0, len(ids), 500):
        ctx.keep(_gen(llama, "draft", ids[lo:lo + 500]))
    assert ctx.state.text == text
    assert qwen.tok.decode(ctx.prefix_ids("target")[len(qwen.prompt_ids(Q)):]) == text


# ----------------------------------------------------------------------------- judge prompts

REASONING = ("  <think>\nOkay, $x=-4$.\n\nWait, check: $(-4)^2 = 16$. Yes.\n</think>\n\n"
             "So $\\frac{3}{4}x = -3$.\n\n")


@pytest.mark.parametrize("which", ["llama", "qwen"])
def test_judge_prompt_holds_the_reasoning_verbatim(which, request):
    """Llama-3.1's template trims the assistant turn; Qwen3's keeps only what follows
    ``</think>`` in an earlier assistant turn. The judge must see all of it, exactly."""
    p = request.getfixturevalue(which)
    text = p.decode(p.judge_ids(Q, REASONING, "Rate the last step from 0 to 9.", "Rating: "))
    assert text.count(REASONING) == 1
    assert text.startswith(p.decode(p.prompt_ids(Q)))  # the question prompt, then the reasoning
    assert text[len(p.decode(p.prompt_ids(Q))):].startswith(REASONING)
    assert text.endswith("Rating: ")
