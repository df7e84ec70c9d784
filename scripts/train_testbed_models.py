#!/usr/bin/env python3
"""Train the testbed's draft/target pair on the reasoning-shaped `chain` task, on CPU.

    python scripts/train_testbed_models.py --out models --seed 0

writes models/chain-draft and models/chain-target: standard Hugging Face
`LlamaForCausalLM` checkpoints (safetensors, float32), each with its OWN byte-level BPE
tokenizer trained with `tokenizers` (the draft's 384 tokens, the target's 640: different
vocabularies, so draft text is re-encoded for the target as with R1-Llama + QwQ), saved as
`PreTrainedTokenizerFast`, and a chat template whose generation prompt opens a reasoning
block (`<think>\\n`), as R1's and QwQ's do.

- The draft (2 layers by default; the shipped one was grown to 3, `--draft-grow-to`) trains
  on clean solutions and stops once its greedy accuracy on held-out problems reaches
  `--draft-stop-at-accuracy`: it is weak on purpose.
- The target (8 layers) also trains on solutions with one error carried on unnoticed,
  then fixed ("Wait, ..."); the wrong paragraphs carry no loss, so it learns to repair a
  wrong chunk it continues after (append mode), not to err. `--target-errors draft` (the
  shipped target): the draft's own error kinds (`reasoning.ERROR_KINDS`) carried on for
  0-4 rounds with the usual asides, sometimes through the closing answer; `slips` (the
  first target): a wrong result carried on for 0-2 rounds (docs/testbed_chain.md);
  `recheck`: every solution looks back every 3-5 rounds, redoing the last rounds, and
  the look-back finds the injected error (`reasoning.LOOK_BACK`). A draft that must
  continue after such a target's takeovers learns look-backs too (`--draft-look-backs`;
  `--draft-look-backs continue`: it goes on with the target's, but opens none itself).
- Per-token decode cost on SGLang's CPU path is ~1.25 ms + 0.45 ms per layer at batch 1
  (models/README.md), so 2 vs 8 layers gives a target/draft cost ratio of about 2.3,
  the real pair's ~2.2 (../shared/reference/REAL_WORKLOAD.md).

head_dim is 64 (FlashInfer and vLLM's CPU attention reject smaller heads); config.json
keeps to fields that transformers 4.57 and 5.x both read (`hf_training.py`, shared with
`train_tiny_models.py`). `--autocast-bf16` trains under bfloat16 autocast, weights in
float32 (the 10-layer target of docs/testbed_chain.md). CI never retrains.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atts.tasks import reasoning  # noqa: E402
import hf_training  # noqa: E402  (scripts/: what both training scripts share)
from hf_training import collate, previous_card, prompt_ids  # noqa: E402

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>",
            "<think>", "</think>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|eos|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n<think>\\n' }}{% endif %}"
)
ROLES = {
    # layers, hidden, heads (head_dim 64), ffn, BPE vocabulary size
    "draft": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=384, vocab=384),
    "target": dict(num_hidden_layers=8, hidden_size=128, num_attention_heads=2, intermediate_size=512, vocab=640),
}
MAX_POSITIONS = 4096


def build_tokenizer(vocab_size: int, corpus: list[str]):
    """A byte-level BPE (digits split one by one, as Qwen does) trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus, trainer)
    tk = think_tags_as_text(tk)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>",
                                   unk_token="<|unk|>", pad_token="<|pad|>", model_max_length=MAX_POSITIONS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def think_tags_as_text(tk):
    """``<think>`` and ``</think>`` as added tokens that are not special, as in Qwen3's
    and R1's tokenizers: a server decoding with ``skip_special_tokens`` keeps them in the
    text. (The first chain tokenizers marked them special, so a draft chunk that closed
    its think block reached the target as four newlines: each scored about -13 nats.)"""
    from tokenizers import Tokenizer

    d = json.loads(tk.to_str())
    for t in d["added_tokens"]:
        if t["content"] in ("<think>", "</think>"):
            t["special"] = False
    return Tokenizer.from_str(json.dumps(d))


def encode_example(tok, problem: str, sol: reasoning.Solution) -> tuple[list[int], list[int]]:
    """Chat ids (user problem, assistant solution + eos) and the loss mask: 1 on solution
    tokens that start inside a loss span (wrong injected paragraphs excluded)."""
    p_ids = prompt_ids(tok, problem)
    enc = tok(sol.text, add_special_tokens=False, return_offsets_mapping=True)
    mask, j, spans = [], 0, sol.loss_spans  # spans are sorted and disjoint: one pass
    for start, _ in enc["offset_mapping"]:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        mask.append(int(j < len(spans) and spans[j][0] <= start))
    return p_ids + enc["input_ids"] + [tok.eos_token_id], [0] * len(p_ids) + mask + [1]


def length_batches(examples, tokens_per_batch: int, rng: random.Random):
    """Endless batches of similar length (sorted within shuffled pools of 2,000), each
    about `tokens_per_batch` tokens including padding."""
    while True:
        idx = list(range(len(examples)))
        rng.shuffle(idx)
        for i in range(0, len(idx), 2000):
            pool = sorted(idx[i:i + 2000], key=lambda j: len(examples[j][0]))
            out, cur = [], []
            for j in pool:
                n = max([len(examples[k][0]) for k in cur] + [len(examples[j][0])])
                if cur and n * (len(cur) + 1) > tokens_per_batch:
                    out.append(cur)
                    cur = []
                cur.append(j)
            if cur:
                out.append(cur)
            rng.shuffle(out)
            for b in out:
                yield [examples[j] for j in b]


def greedy_accuracy(model, tok, problems, batch_size: int = 50) -> float:
    """Exact match of the boxed answer under greedy decoding; at most 1.3x the longest
    reference solution's tokens (+64) per batch."""
    return hf_training.greedy_accuracy(
        model, tok, problems, batch_size=batch_size,
        max_new=lambda chunk: 64 + int(1.3 * max(len(tok.encode(reasoning.reference_solution(p))) for p in chunk)))


def grow_depth(model, layers: int):
    """Depth up-scaling: a deeper copy of ``model`` whose extra layers (appended on top) start
    as the identity (their attention output and MLP down projections are zero, so each adds
    nothing to the residual stream): the grown model computes exactly what ``model`` did and
    training continues from there instead of from scratch."""
    from transformers import LlamaForCausalLM

    cfg = model.config.__class__.from_dict({**model.config.to_dict(), "num_hidden_layers": layers})
    grown = LlamaForCausalLM(cfg)
    missing, _ = grown.load_state_dict(model.state_dict(), strict=False)
    for layer in grown.model.layers[model.config.num_hidden_layers:]:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)  # attention adds 0 to the residual
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)  # the MLP adds 0 to the residual
    assert all(".layers." in k for k in missing), missing
    return grown


def train_role(role: str, args, eval_problems) -> dict:
    from transformers import AutoTokenizer, LlamaForCausalLM

    arch = dict(ROLES[role])
    if getattr(args, f"{role}_arch"):
        l, h, n, f = (int(v) for v in getattr(args, f"{role}_arch").split(","))
        arch.update(num_hidden_layers=l, hidden_size=h, num_attention_heads=n, intermediate_size=f)
    steps, lr = getattr(args, f"{role}_steps"), getattr(args, f"{role}_lr")
    error_share = args.target_error_share if role == "target" else args.draft_error_share
    rng = random.Random(f"{args.seed}/{role}")
    problems = reasoning.generate("train", args.train_problems, seed=args.seed)
    corpus = [p.problem + "\n" + reasoning.solve(p, rng).text for p in problems[:4000]]
    init = getattr(args, f"{role}_init_from")
    tok_from = init or getattr(args, f"{role}_tokenizer_from")  # keep a committed vocabulary
    tok = AutoTokenizer.from_pretrained(tok_from) if tok_from else build_tokenizer(arch["vocab"], corpus)
    # the draft learns clean text, with look-backs (and `--draft-error-share` of them finding
    # an error) when it must read a look-back target's takeovers in append mode
    errors = args.target_errors if role == "target" else args.draft_look_back_lessons if args.draft_look_backs else "draft"
    lessons = [reasoning.solve(p, rng, with_error=rng.random() < error_share, errors=errors) for p in problems]
    if role == "draft" and args.draft_look_backs == "continue":  # go on with the target's look-backs, open none
        lessons = [reasoning.continue_only(sol) for sol in lessons]
    examples = [encode_example(tok, p.problem, sol) for p, sol in zip(problems, lessons)]
    torch.manual_seed(args.seed)
    # continue a saved checkpoint (its tokenizer and architecture win), or start fresh
    model = LlamaForCausalLM.from_pretrained(init, dtype=torch.float32) if init else LlamaForCausalLM(hf_training.llama_config(tok, arch, MAX_POSITIONS))
    grow = getattr(args, f"{role}_grow_to")
    if grow:
        model = grow_depth(model, grow)
    arch.update(num_hidden_layers=model.config.num_hidden_layers, hidden_size=model.config.hidden_size,
                num_attention_heads=model.config.num_attention_heads,
                intermediate_size=model.config.intermediate_size, vocab=model.config.vocab_size)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{role}] {arch} vocab={len(tok)} params={n_params / 1e6:.2f}M steps={steps} lr={lr} "
          f"examples={len(examples)} mean_len={sum(len(e[0]) for e in examples) / len(examples):.0f}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    t0, seen, stopped_at, history = time.time(), 0, None, []
    budget = getattr(args, f"{role}_max_minutes") * 60
    deadline = t0 + budget

    def progress(s: int) -> float:  # the cosine follows the steps or the time cap, whichever ends first
        return min(1.0, max(s / steps, (time.time() - t0) / budget))

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress(s)))))
    it = length_batches(examples, args.tokens_per_batch, random.Random(args.seed))
    model.train()
    for step in range(1, steps + 1):
        x, y, att = collate(next(it), tok.pad_token_id)
        seen += int(att.sum())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
            loss = model(input_ids=x, attention_mask=att, labels=y).loss  # weights and optimizer stay float32
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % args.log_every == 0:
            el = time.time() - t0
            print(f"[{role}] step {step}/{steps} loss {loss.item():.4f} {el:.0f}s {seen / el:.0f} tok/s", flush=True)
        check = step % args.eval_every == 0 or step == steps or time.time() > deadline
        if check:
            acc = greedy_accuracy(model, tok, eval_problems[:args.eval_quick])
            history.append({"step": step, "seconds": round(time.time() - t0), "greedy_acc": acc})
            print(f"[{role}] step {step}: greedy_acc {acc:.3f} ({args.eval_quick} problems)", flush=True)
            stop = args.draft_stop_at_accuracy if role == "draft" else None
            if (stop and acc >= stop) or time.time() > deadline:  # a deliberately weak draft / the time cap
                stopped_at = step
                break
    wall = time.time() - t0
    acc = greedy_accuracy(model, tok, eval_problems)
    card = {"role": role, "task": "chain", "arch": arch, "head_dim": 64, "parameters": n_params,
            "steps": stopped_at or steps, "planned_steps": steps, "lr": lr, "tokens_per_batch": args.tokens_per_batch,
            "target_error_share": error_share, "seed": args.seed, "train_wall_seconds": round(wall, 1),
            "train_tokens": seen, "torch_threads": torch.get_num_threads(), "eval_history": history,
            "transformers_greedy_accuracy_test": acc, "eval_problems": len(eval_problems),
            "init_from": init, "tokenizer_from": tok_from, "previous_training": previous_card(init),
            "schedule": "linear warm-up over 5% of the steps, then cosine to 0.1x over the steps or the time cap, whichever ends first",
            "autocast": "bfloat16" if args.autocast_bf16 else None,
            "target_errors": args.target_errors if role == "target" else None,
            "draft_errors": errors if role == "draft" else None,
            "look_backs": (args.draft_look_backs if role == "draft" else "write") if errors in ("recheck", "resume") else None,
            "error_kinds": reasoning.ERROR_KINDS if error_share and errors in ("draft", "recheck", "resume") else None,
            "command": " ".join(["python", "scripts/train_testbed_models.py", *sys.argv[1:]])}
    hf_training.write_checkpoint(model, tok, Path(args.out) / f"chain-{role}", card, CHAT_TEMPLATE)
    print(f"[{role}] done in {wall:.0f}s, greedy test accuracy {acc:.3f}", flush=True)
    return card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roles", default="draft,target")
    ap.add_argument("--train-problems", type=int, default=60000)
    ap.add_argument("--eval-problems", type=int, default=200)
    ap.add_argument("--eval-quick", type=int, default=100)
    ap.add_argument("--tokens-per-batch", type=int, default=12000)
    ap.add_argument("--draft-steps", type=int, default=3000)
    ap.add_argument("--target-steps", type=int, default=3000)
    ap.add_argument("--draft-lr", type=float, default=3e-3)
    ap.add_argument("--target-lr", type=float, default=1.5e-3)
    ap.add_argument("--draft-max-minutes", type=float, default=20)
    ap.add_argument("--target-max-minutes", type=float, default=55)
    ap.add_argument("--target-error-share", type=float, default=0.35,
                    help="share of target training solutions with one injected, corrected error")
    ap.add_argument("--target-errors", choices=reasoning.ERROR_MODELS, default="draft",
                    help="the error lessons: draft (the draft's own kinds: the shipped target's), slips (the first "
                         "target's), recheck (look-backs every 3-5 rounds that find the draft's kinds of error) or "
                         "resume (recheck, each look-back followed by a paragraph naming the next round and its count-down)")
    ap.add_argument("--draft-stop-at-accuracy", type=float, default=0.75)
    ap.add_argument("--draft-look-backs", nargs="?", const="write", choices=("write", "continue"), default=None,
                    help="the draft learns solutions with look-backs (errors=recheck), as a look-back target writes "
                         "them: `write` (the default) opens them too; `continue` only goes on with one already "
                         "opened (no loss on the openings: reasoning.continue_only)")
    ap.add_argument("--draft-look-back-lessons", choices=("recheck", "resume"), default="recheck",
                    help="with --draft-look-backs: which look-back lessons (as --target-errors); match the target's")
    ap.add_argument("--draft-error-share", type=float, default=0.0,
                    help="with --draft-look-backs: share of draft solutions whose look-back finds an error (no loss on it)")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="forward and backward under bfloat16 autocast (weights, optimizer and checkpoint stay "
                         "float32): 1.3x the tokens per second of float32 on a CPU with AVX512-BF16")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=250)
    for role in ROLES:
        ap.add_argument(f"--{role}-arch", default=None, help="layers,hidden,heads,ffn (head_dim 64)")
        ap.add_argument(f"--{role}-init-from", default=None, help="continue training this checkpoint")
        ap.add_argument(f"--{role}-tokenizer-from", default=None,
                        help="fresh weights, but this checkpoint's tokenizer (keeps the committed vocabulary)")
        ap.add_argument(f"--{role}-grow-to", type=int, default=None,
                        help="with --ROLE-init-from: append identity-initialised layers up to this depth")
    args = ap.parse_args()
    if args.draft_error_share and not args.draft_look_backs:
        ap.error("--draft-error-share needs --draft-look-backs (a clean draft learns no error lessons)")
    torch.set_num_threads(args.threads)
    eval_problems = reasoning.generate("test", args.eval_problems, seed=0)
    report = {role: train_role(role, args, eval_problems) for role in args.roles.split(",")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
