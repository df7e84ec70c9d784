#!/usr/bin/env python3
"""Train the testbed's tiny draft/target pair on the `arith` task, on CPU with torch.

Both models are standard Hugging Face `LlamaForCausalLM` checkpoints (safetensors,
float32) with a character-level tokenizer built by the `tokenizers` library, wrapped as
`PreTrainedTokenizerFast`, and a chat template. head_dim is 64 for both (FlashInfer and
vLLM's CPU attention reject smaller heads). The draft is shallow and weak, the target
deep and accurate: on CPU, per-token decode latency of tiny models follows depth, so
the depth ratio is what makes draft/target savings measurable.

    python scripts/train_tiny_models.py --out models --seed 0

writes models/tiny-draft and models/tiny-target. Training is a one-time job; the
checkpoints are committed and CI never retrains. `--init-only` writes untrained
checkpoints of the same shapes (used to measure serving speed before training).
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
from atts.tasks import arith  # noqa: E402
import hf_training  # noqa: E402  (scripts/: what both training scripts share)
from hf_training import collate, previous_card, prompt_ids  # noqa: E402

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|unk|>", "<|system|>", "<|user|>", "<|assistant|>"]
# every printable ASCII character plus newline: the task needs ~40 of them, the rest keep
# arbitrary text (chat API tests, judge prompts) encodable without <|unk|>
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|eos|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

ARCHS = {
    # name: layers, hidden, heads (head_dim 64), ffn
    "draft": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=256),
    "target": dict(num_hidden_layers=16, hidden_size=128, num_attention_heads=2, intermediate_size=512),
}


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        unk_token="<|unk|>",
        pad_token="<|pad|>",
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode_example(tok, problem: str, solution: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat (user problem, assistant solution + eos) and the loss mask
    (1 on the assistant's tokens only)."""
    p_ids = prompt_ids(tok, problem)
    s_ids = tok.encode(solution, add_special_tokens=False) + [tok.eos_token_id]
    return p_ids + s_ids, [0] * len(p_ids) + [1] * len(s_ids)


def batches(examples, batch_size: int, rng: random.Random):
    while True:
        idx = list(range(len(examples)))
        rng.shuffle(idx)
        for i in range(0, len(idx) - batch_size + 1, batch_size):
            yield [examples[j] for j in idx[i : i + batch_size]]


def greedy_accuracy(model, tok, problems) -> float:
    return hf_training.greedy_accuracy(model, tok, problems, max_new=120, batch_size=64)


def train_one(role: str, args, tok, train_examples, eval_problems) -> dict:
    from transformers import LlamaForCausalLM

    torch.manual_seed(args.seed)
    arch = dict(args.archs[role])
    steps = args.draft_steps if role == "draft" else args.target_steps
    lr = args.draft_lr if role == "draft" else args.target_lr
    init = getattr(args, f"{role}_init_from")
    if init:  # continue training a saved checkpoint (its architecture wins)
        model = LlamaForCausalLM.from_pretrained(init, dtype=torch.float32)
        arch = {k: getattr(model.config, k) for k in arch}
    else:
        model = LlamaForCausalLM(hf_training.llama_config(tok, arch, max_positions=512))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[{role}] {arch} params={n_params/1e6:.2f}M steps={steps} lr={lr}", flush=True)
    t0 = time.time()
    if not args.init_only:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
        warmup = max(1, steps // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        )
        rng = random.Random(args.seed)
        it = batches(train_examples, args.batch_size, rng)
        model.train()
        for step in range(1, steps + 1):
            x, y, att = collate(next(it), tok.pad_token_id)
            loss = model(input_ids=x, attention_mask=att, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            stop_at = args.draft_stop_at_accuracy if role == "draft" else None
            if stop_at and step % 100 == 0:
                acc_now = greedy_accuracy(model, tok, eval_problems[:100])
                if acc_now >= stop_at:  # a deliberately weak draft: stop once it is this good
                    print(f"[{role}] step {step}: greedy_acc {acc_now:.3f} >= {stop_at}: stopping", flush=True)
                    steps = step
                    break
            if step % args.log_every == 0 or step == steps:
                msg = f"[{role}] step {step}/{steps} loss {loss.item():.4f} {time.time() - t0:.0f}s"
                if args.eval_every and (step % args.eval_every == 0 or step == steps):
                    msg += f" greedy_acc {greedy_accuracy(model, tok, eval_problems[:100]):.3f}"
                print(msg, flush=True)
    wall = time.time() - t0
    acc = greedy_accuracy(model, tok, eval_problems) if not args.init_only else None
    info = {
        "role": role, "arch": arch, "head_dim": 64, "parameters": n_params, "steps": steps,
        "lr": lr, "batch_size": args.batch_size, "planned_steps": (args.draft_steps if role == "draft" else args.target_steps),
        "stop_at_accuracy": args.draft_stop_at_accuracy if role == "draft" else None, "seed": args.seed, "train_wall_seconds": round(wall, 1),
        "torch_threads": torch.get_num_threads(), "transformers_greedy_accuracy_test": acc,
        "eval_problems": len(eval_problems), "init_only": args.init_only,
        "init_from": init, "previous_training": previous_card(init),
    }
    hf_training.write_checkpoint(model, tok, Path(args.out) / f"tiny-{role}", info, CHAT_TEMPLATE)
    print(f"[{role}] done in {wall:.0f}s, greedy test accuracy (transformers) {acc}", flush=True)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roles", default="draft,target")
    ap.add_argument("--train-problems", type=int, default=60000)
    ap.add_argument("--eval-problems", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--draft-steps", type=int, default=1000)
    ap.add_argument("--target-steps", type=int, default=2000)
    ap.add_argument("--draft-lr", type=float, default=3e-3)
    ap.add_argument("--target-lr", type=float, default=1.5e-3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--draft-stop-at-accuracy", type=float, default=None,
                    help="stop draft training once greedy accuracy on 100 test problems reaches this")
    ap.add_argument("--init-only", action="store_true", help="write untrained checkpoints (speed checks)")
    for role in ARCHS:
        ap.add_argument(f"--{role}-arch", default=None, help="layers,hidden,heads,ffn")
        ap.add_argument(f"--{role}-init-from", default=None, help="continue training this checkpoint")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.archs = {role: dict(a) for role, a in ARCHS.items()}
    for role in ARCHS:
        spec = getattr(args, f"{role}_arch")
        if spec:
            l, h, n, f = (int(v) for v in spec.split(","))
            args.archs[role] = dict(num_hidden_layers=l, hidden_size=h, num_attention_heads=n, intermediate_size=f)
            if h != 64 * n:
                ap.error(f"--{role}-arch: hidden must be 64 * heads (head_dim 64)")
    tok = build_tokenizer()
    train = arith.generate("train", args.train_problems, seed=args.seed)
    train_examples = [encode_example(tok, p.problem, p.solution) for p in train]
    eval_problems = arith.generate("test", args.eval_problems, seed=0)
    report = {"command": " ".join(["python", "scripts/train_tiny_models.py", *sys.argv[1:]])}
    for role in args.roles.split(","):
        report[role] = train_one(role, args, tok, train_examples, eval_problems)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
