"""Prompts as token ids, built with each model's own chat template.

The question becomes chat messages (an optional system message and one user message);
the model's tokenizer renders them with ``add_generation_prompt=True``. The reasoning so
far is appended as token ids, segment by segment (see `atts.runner.Segment`), so that
continuing a chunk concatenates it exactly: nothing is inserted between chunks, and a
chunk boundary is always a token boundary.
"""

from __future__ import annotations

from functools import lru_cache

from atts.tasks.datasets import Question

MATH_TEMPLATE = (
    "Please answer the following question step by step. Separate your reasoning steps with a "
    "blank line, and put your final answer within \\boxed{{}}.\n\n{problem}"
)
MC_TEMPLATE = (
    "Please answer the following multiple-choice question step by step. Separate your reasoning "
    "steps with a blank line, and put the letter of your final choice within \\boxed{{}}.\n\n"
    "{problem}\n\n{choices}"
)
DEFAULT_TEMPLATES = {"math": MATH_TEMPLATE, "mc": MC_TEMPLATE, "arith": "{problem}", "chain": "{problem}"}
DEFAULT_SYSTEM = {"math": "You are a math expert.", "mc": "You are a math expert.", "arith": None, "chain": None}


def user_text(q: Question, template: str | None = None) -> str:
    t = template or DEFAULT_TEMPLATES[q.kind]
    choices = "\n".join(f"{'ABCD'[i]}) {c}" for i, c in enumerate(q.choices))
    return t.format(problem=q.problem, choices=choices)


def messages(q: Question, template: str | None = None, system: str | None = None) -> list[dict]:
    sys_msg = system if system is not None else DEFAULT_SYSTEM[q.kind]
    msgs = [{"role": "system", "content": sys_msg}] if sys_msg else []
    return msgs + [{"role": "user", "content": user_text(q, template)}]


@lru_cache(maxsize=8)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer  # deferred: transformers takes seconds to import; only a command that tokenizes pays it

    return AutoTokenizer.from_pretrained(path)


class Prompter:
    """One model's view of text: chat template, encoding and decoding."""

    def __init__(self, tokenizer_path: str, template: str | None = None, system: str | None = None):
        self.tokenizer_path = tokenizer_path
        self.tok = _load_tokenizer(tokenizer_path)
        self.template = template
        self.system = system

    def prompt_ids(self, q: Question) -> list[int]:
        text = self.tok.apply_chat_template(messages(q, self.template, self.system),
                                            add_generation_prompt=True, tokenize=False)
        return self.tok.encode(text, add_special_tokens=False)

    def judge_ids(self, q: Question, reasoning: str, instruction: str, prefill: str) -> list[int]:
        """A judge prompt: the question, the reasoning so far as the assistant's turn, a
        user turn with ``instruction``, and the assistant's answer pre-filled with
        ``prefill`` (SpecReason's step rating).

        The reasoning goes in verbatim: real templates rewrite earlier assistant turns
        (Llama-3.1's `trim`s them; Qwen3's keeps only the text after ``</think>``, so a
        reasoning that has closed its think block reached the judge as its last line
        only). The template renders a placeholder, replaced by the reasoning afterwards."""
        msgs = messages(q, self.template, self.system) + [{"role": "assistant", "content": _REASONING_SLOT},
                                                          {"role": "user", "content": instruction}]
        text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if text.count(_REASONING_SLOT) != 1:
            raise ValueError(f"{self.tokenizer_path}: the chat template does not render an assistant turn verbatim")
        return self.tok.encode(text.replace(_REASONING_SLOT, reasoning) + prefill, add_special_tokens=False)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def encode_after(self, before: list[int], text: str, look_back: int = 8) -> tuple[list[int], int]:
        """``text`` (written by a model with another tokenizer) encoded to follow ``before``:
        ``(ids, drop)``, where the view is ``before[:len(before) - drop] + ids``.

        Encoding ``text`` on its own splits a word that a chunk boundary cut: "Alr" |
        "ight" becomes "Al", "r", "ight", which no model writes, and a target scores the
        piece after the cut at about -15 nats (measured on the chain testbed: it tripled
        the median PPL of right turn-1 chunks and took the AUROC of errors there from
        0.83 to 0.56). So the last ``look_back`` ids of ``before`` are encoded again
        with ``text``, and those that then tokenize differently (" Al", "r" -> " Alright")
        are replaced: the view is the text tokenized as a whole, for any word up to
        ``look_back`` ids long. Falls back to ``text`` alone when that does not
        round-trip (an id holding part of a UTF-8 character)."""
        if not before or not text:
            return self.encode(text), 0
        dec = lambda ids: self.tok.decode(ids, skip_special_tokens=False)  # noqa: E731
        tail = before[-look_back:]
        ids = self.encode(dec(tail) + text)
        keep = 0  # the ids of `tail` that the joint encoding reproduces
        while keep < min(len(tail), len(ids)) and ids[keep] == tail[keep]:
            keep += 1
        drop, ids = len(tail) - keep, ids[keep:]
        # checked with one more id in front: a tokenizer that adds a prefix space when
        # encoding (SentencePiece) would otherwise pass a round-trip of the tail alone
        head = before[len(before) - len(tail) - 1:len(before) - len(tail)]
        if dec(head + tail[:keep] + ids) != dec(head + tail) + text:
            return self.encode(text), 0
        return ids, drop

    def cut_word_ids(self, ids: list[int]) -> int:
        """How many of the last ``ids`` (a chunk that a token limit cut, in this
        tokenizer's view) may tokenize differently once the text goes on: a word cut in
        the middle (the ids from its leading space on), else one id ending in a space or
        a punctuation mark (``}`` of ``}.``). 0 if the text ends in a digit or a newline
        (a cut number is content: its digits are what the chunk says), or if nothing
        would be left.

        A word cut in another vocabulary ("wen" of "went") tokenizes as pieces (" w",
        "e", "n") that the reader never sees whole words written as, and a target scored
        them at -9 to -26 nats each. They are scored with the next chunk instead, where
        `encode_after` re-encodes them whole."""
        text = self.tok.decode(ids, skip_special_tokens=False)
        n = len(text) - len(text.rstrip("".join(c for c in set(text[-64:]) if c.isalpha())))
        if n:
            n += n < len(text) and text[-n - 1] == " "  # byte-level BPEs start a word with its space
        elif text and not text[-1].isdigit() and text[-1] != "\n":
            n = 1
        if n == 0 or n >= len(text):
            return 0
        for k in range(1, len(ids)):
            if len(self.tok.decode(ids[-k:], skip_special_tokens=False)) >= n:
                return k
        return 0

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)

    def decode_chunk(self, ids: list[int], held: list[int] = ()) -> tuple[str, int]:
        """The text of a chunk's ids as whole characters: ``(text, n_held)``.

        A chunk cut at max tokens can end inside a multi-byte character (byte-level
        BPE: Llama-3 writes 🙂 as two tokens), which the server decodes as U+FFFD, and
        the next chunk then starts with its orphaned continuation bytes. Here the last
        ``n_held`` ids (at most 3: a UTF-8 character has at most 4 bytes) are held back
        from the text; ``held``, the previous chunk's held ids by the same writer, are
        decoded in front, completing the character. Orphaned continuation bytes at the
        start (their lead byte was held by a chunk another model continued) are dropped.
        Special tokens are skipped, as the servers' text (`skip_special_tokens`)."""
        ids = list(held) + list(ids)
        for n_held in range(min(3, len(ids)) + 1):
            text = self.tok.decode(ids[:len(ids) - n_held], skip_special_tokens=True)
            if not text.endswith(REPLACEMENT_CHAR):
                return text.lstrip(REPLACEMENT_CHAR), n_held
        return self.tok.decode(ids, skip_special_tokens=True).replace(REPLACEMENT_CHAR, ""), 0


_REASONING_SLOT = "ATTSREASONINGSLOT7f3a"  # no whitespace, no tags: every template copies it as is
REPLACEMENT_CHAR = "\ufffd"  # what a decoder makes of an incomplete UTF-8 sequence
