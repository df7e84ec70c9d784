"""Hardware profiles (``HW.yaml``): what one iteration of a role's server costs.

A profile has one section per role (``draft``, ``target``). Each is either
- ``kind: roofline`` (GPUs): model size, layers / hidden size, KV bytes per token, GPUs
  and tensor-parallel degree, HBM bandwidth and FLOP/s with their efficiencies, the
  TP all-reduce per iteration, per-request overhead, memory fraction; or
- ``kind: linear`` (fitted, e.g. a CPU testbed): the iteration coefficients directly.

Both reduce to the same linear iteration cost (seconds), used by `atts.sim.server`:

    t(iteration) = step + seq * n_decode + ctx * sum(context of decoding sequences)
                   + tok * n_prefill_tokens + attn * sum(prefill tokens x their context)

Roofline terms, per GPU of a TP group (a decode step reads the weights once and each
sequence's KV; FLOPs are 2 x params per token), added rather than overlapped (the
cost model of ../shared/reference/REAL_WORKLOAD.md):

    step = weight_bytes / (tp * hbm * eff_hbm) + allreduce + step_overhead
    seq  = tok = 2 * params / (tp * flops * eff_flops)
    ctx  = kv_bytes_per_token / (tp * hbm * eff_hbm) + 4 * layers * hidden / (tp * flops * eff_flops)
    attn = 4 * layers * hidden / (tp * flops * eff_flops)

KV capacity (tokens) = (hbm_gb * mem_fraction * tp - weight_bytes) / kv_bytes_per_token.
The sensitivity band moves each efficiency by its ``uncertainty`` (linear profiles: all
coefficients by a relative ``uncertainty``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

ROLES = ("draft", "target")


class HardwareError(ValueError):
    """A malformed hardware profile (a user error)."""


@dataclass(frozen=True)
class Cost:
    """One server's linear iteration cost (seconds) and its memory."""

    step: float
    seq: float
    ctx: float
    tok: float
    attn: float
    request_overhead: float  # latency of each request outside the GPU (HTTP, tokenizer, scheduling)
    kv_capacity_tokens: int
    prefill_budget_tokens: int = 8192  # tokens of one prefill batch (SGLang chunked_prefill_size)
    new_token_ratio: float = 0.7  # share of max_new_tokens reserved for each running request at admission
    replicas: int = 1  # servers of this role (gpus // tp), balanced by least outstanding requests
    gpus: int = 1

    def decode_step(self, n: int, ctx_sum: float) -> float:
        return self.step + self.seq * n + self.ctx * ctx_sum

    def prefill(self, tokens: int, attn_pairs: float) -> float:
        return self.step + self.tok * tokens + self.attn * attn_pairs


def _num(d: dict, key: str, where: str, default=None) -> float:
    v = d.get(key, default)
    if v is None:
        raise HardwareError(f"{where}.{key}: missing")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise HardwareError(f"{where}.{key}: not a number ({v!r})") from None
    if v < 0:
        raise HardwareError(f"{where}.{key}: must be >= 0, got {v}")
    return v


def roofline_cost(d: dict, where: str, shift: float = 0.0) -> Cost:
    """Cost of a ``kind: roofline`` role; ``shift`` in {-1, 0, 1} moves both efficiencies
    by -1, 0 or +1 times their uncertainty (slow, nominal, fast)."""
    gpu, eff, unc = d.get("gpu") or {}, d.get("efficiency") or {}, d.get("uncertainty") or {}
    tp = int(_num(d, "tp", where, 1))
    gpus = int(_num(d, "gpus", where, tp))
    if tp < 1 or gpus < tp or gpus % tp:
        raise HardwareError(f"{where}: gpus ({gpus}) must be a positive multiple of tp ({tp})")
    params = _num(d, "params_b", where) * 1e9
    wbytes = params * _num(d, "bytes_per_param", where, 2)
    kvb = _num(d, "kv_bytes_per_token", where)
    layers, hidden = _num(d, "layers", where, 0), _num(d, "hidden", where, 0)
    hbm = _num(gpu, "hbm_tb_s", where + ".gpu") * 1e12
    flops = _num(gpu, "tflops", where + ".gpu") * 1e12
    e_h = _num(eff, "hbm", where + ".efficiency") + shift * _num(unc, "hbm", where + ".uncertainty", 0)
    e_f = _num(eff, "flops", where + ".efficiency") + shift * _num(unc, "flops", where + ".uncertainty", 0)
    if not (0 < e_h <= 1 and 0 < e_f <= 1):
        raise HardwareError(f"{where}: efficiencies must be in (0, 1] (after the uncertainty shift)")
    bw, fl = tp * hbm * e_h, tp * flops * e_f  # a TP group's effective bandwidth and FLOP/s
    attn = 4 * layers * hidden / fl  # QK^T and AV: 2 matmuls x 2 FLOPs x layers x hidden per (token, context) pair
    cap = (_num(gpu, "hbm_gb", where + ".gpu") * 1e9 * _num(d, "mem_fraction", where, 0.9) * tp - wbytes) / kvb
    if cap <= 0:
        raise HardwareError(f"{where}: the weights do not fit in hbm_gb * mem_fraction * tp")
    return Cost(step=wbytes / bw + _num(d, "allreduce_ms", where, 0) / 1e3 + _num(d, "step_overhead_ms", where, 0) / 1e3,
                seq=2 * params / fl, ctx=kvb / bw + attn, tok=2 * params / fl, attn=attn,
                request_overhead=_num(d, "request_overhead_ms", where, 10) / 1e3, kv_capacity_tokens=int(cap),
                prefill_budget_tokens=int(_num(d, "prefill_budget_tokens", where, 8192)),
                new_token_ratio=_num(d, "new_token_ratio", where, 0.7), replicas=gpus // tp, gpus=gpus)


def linear_cost(d: dict, where: str, shift: float = 0.0) -> Cost:
    """Cost of a ``kind: linear`` role (milliseconds in the file); ``shift`` scales every
    iteration coefficient by (1 - shift * uncertainty): +1 fast, -1 slow."""
    s = 1 - shift * _num(d, "uncertainty", where, 0.0)
    if s <= 0:
        raise HardwareError(f"{where}.uncertainty: must be < 1")
    ms = lambda k: _num(d, k, where, 0) / 1e3 * s  # noqa: E731
    return Cost(step=ms("step_ms"), seq=ms("seq_ms"), ctx=ms("ctx_ms"), tok=ms("prefill_token_ms"),
                attn=ms("attn_ms"), request_overhead=_num(d, "request_overhead_ms", where, 0) / 1e3,
                kv_capacity_tokens=int(_num(d, "kv_capacity_tokens", where)),
                prefill_budget_tokens=int(_num(d, "prefill_budget_tokens", where, 8192)),
                new_token_ratio=_num(d, "new_token_ratio", where, 0.7),
                replicas=int(_num(d, "replicas", where, 1)), gpus=int(_num(d, "gpus", where, 1)))


@dataclass(frozen=True)
class Hardware:
    name: str
    roles: dict  # role -> its raw section
    path: str | None = None

    def cost(self, role: str, shift: float = 0.0) -> Cost:
        d = self.roles[role]
        kind = d.get("kind", "roofline")
        if kind == "roofline":
            return roofline_cost(d, f"{self.name}.{role}", shift)
        if kind == "linear":
            return linear_cost(d, f"{self.name}.{role}", shift)
        raise HardwareError(f"{self.name}.{role}.kind: roofline or linear, got {kind!r}")

    def costs(self, shift: float = 0.0) -> dict[str, Cost]:
        return {r: self.cost(r, shift) for r in ROLES}

    def describe(self) -> dict:
        out = {}
        for r in ROLES:
            c = self.cost(r)
            out[r] = {**dataclasses.asdict(c), "batch1_decode_ms_at_2k_context": 1e3 * c.decode_step(1, 2048)}
        return out


def load_hardware(path: str | Path) -> Hardware:
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text())
    except OSError as e:
        raise HardwareError(f"hardware profile {p}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise HardwareError(f"hardware profile {p}: not YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(d, dict) or not isinstance(d.get("roles"), dict):
        raise HardwareError(f"hardware profile {p}: expected a mapping with a 'roles' section")
    missing = [r for r in ROLES if not isinstance(d["roles"].get(r), dict)]
    if missing:
        raise HardwareError(f"hardware profile {p}: roles.{missing[0]} missing")
    hw = Hardware(str(d.get("name") or p.stem), d["roles"], str(p))
    for r in ROLES:
        hw.cost(r)  # validate now: one clear error before anything runs
    return hw
