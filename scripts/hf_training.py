"""What the two testbeds' training scripts share: `train_testbed_models.py` (the chain
pair, tested) and `train_tiny_models.py` (the arith pair, kept for its recorded figures).

Batches of chat examples, greedy evaluation of the boxed answer, and a checkpoint that
transformers 4.57 (older SGLang/vLLM builds) and 5.x, SGLang and vLLM all load. Imported
by the scripts from this folder (`python scripts/X.py` puts it on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch


def prompt_ids(tok, problem: str) -> list[int]:
    """The chat prompt's ids for a user ``problem``, generation prompt included."""
    text = tok.apply_chat_template([{"role": "user", "content": problem}], add_generation_prompt=True, tokenize=False)
    return tok.encode(text, add_special_tokens=False)


def llama_config(tok, arch: dict, max_positions: int):
    """A tied-embedding Llama of ``arch`` (layers, hidden, heads, ffn; head_dim 64, as
    FlashInfer and vLLM's CPU attention require) over ``tok``'s vocabulary."""
    from transformers import LlamaConfig

    arch = {k: v for k, v in arch.items() if k != "vocab"}
    return LlamaConfig(vocab_size=len(tok), head_dim=64, num_key_value_heads=arch["num_attention_heads"],
                       max_position_embeddings=max_positions, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       pad_token_id=tok.pad_token_id, **arch)


def collate(batch, pad_id: int):
    """(ids, loss mask) pairs -> right-padded inputs, labels (-100 off the mask) and the
    attention mask."""
    n = max(len(ids) for ids, _ in batch)
    x = torch.full((len(batch), n), pad_id, dtype=torch.long)
    y = torch.full((len(batch), n), -100, dtype=torch.long)
    att = torch.zeros((len(batch), n), dtype=torch.long)
    for r, (ids, mask) in enumerate(batch):
        x[r, :len(ids)] = torch.tensor(ids)
        att[r, :len(ids)] = 1
        y[r, :len(ids)] = torch.tensor([t if m else -100 for t, m in zip(ids, mask)])
    return x, y, att


@torch.no_grad()
def greedy_accuracy(model, tok, problems, *, max_new: int | Callable[[list], int], batch_size: int) -> float:
    """Exact match of ``\\boxed{answer}`` under greedy decoding, batched with left padding.
    ``max_new``: new tokens per batch, or a function of the batch's problems."""
    model.eval()
    correct = 0
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        prompts = [prompt_ids(tok, p.problem) for p in chunk]
        n = max(map(len, prompts))
        x = torch.full((len(chunk), n), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros_like(x)
        for r, ids in enumerate(prompts):
            x[r, n - len(ids):] = torch.tensor(ids)
            att[r, n - len(ids):] = 1
        out = model.generate(input_ids=x, attention_mask=att, do_sample=False,
                             max_new_tokens=max_new(chunk) if callable(max_new) else max_new,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        for p, row in zip(chunk, out[:, n:]):
            correct += f"\\boxed{{{p.answer}}}" in tok.decode(row, skip_special_tokens=True)
    model.train()
    return correct / len(problems)


def write_checkpoint(model, tok, out: Path, card: dict, chat_template: str) -> None:
    """save_pretrained, then config.json / tokenizer_config.json reduced to fields that
    transformers 4.57 and 5.x both understand; ``card`` goes to training.json."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    c = model.config
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_key_value_heads, "head_dim": c.head_dim, "hidden_act": "silu",
        "max_position_embeddings": c.max_position_embeddings, "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": True, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id, "torch_dtype": "float32", "initializer_range": 0.02, "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc["chat_template"] = chat_template
    for k in ("backend", "is_local", "extra_special_tokens"):
        tc.pop(k, None)
    tc_path.write_text(json.dumps(tc, indent=2) + "\n")
    (out / "chat_template.jinja").unlink(missing_ok=True)
    (out / "training.json").write_text(json.dumps(card, indent=2) + "\n")


def previous_card(init: str | None) -> dict | None:
    """training.json of the checkpoint a run continues, nested into the new card."""
    p = Path(init) / "training.json" if init else None
    return json.loads(p.read_text()) if p and p.exists() else None
