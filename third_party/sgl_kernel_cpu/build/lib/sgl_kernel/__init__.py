"""Pure-torch stand-ins for the two ``sgl_kernel`` CPU ops that SGLang imports on its
CPU path (``SGLANG_USE_CPU_ENGINE=1``).

``sgl_kernel`` ships only CUDA wheels. On the CPU path SGLang imports exactly these two
names unconditionally; every other CPU kernel is used only when AMX support is detected
through ``convert_weight_packed``, which is deliberately absent here so SGLang takes its
native torch fallbacks.

SGLang's speculative-decoding modules (EAGLE, tree verification) also import a few CPU
kernel names at module level. atts never enables speculative decoding, so those names
exist here only to make the import succeed, and raise if ever called.
"""

from __future__ import annotations

import ctypes

import torch

__version__ = "0.0.0+atts.cpu"
_SPECULATIVE_ONLY = (
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "rotate_input_ids_cpu",
    "build_tree_kernel_efficient_cpu",
    "verify_tree_greedy_cpu",
)
__all__ = ["assign_req_to_token_pool_cpu", "copy_all_layer_kv_cache_cpu", *_SPECULATIVE_ONLY]


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """For each request i: req_to_token[req_pool_indices[i], start_i:end_i] =
    out_cache_loc[off_i : off_i + end_i - start_i], with off_i the running sum of the
    earlier requests' lengths."""
    rows = req_pool_indices.tolist()
    starts = start_offset.tolist()
    ends = end_offset.tolist()
    off = 0
    for row, start, end in zip(rows, starts, ends):
        n = end - start
        if n <= 0:
            continue
        if end > pool_len:
            raise IndexError(f"token slot {end} beyond pool length {pool_len}")
        req_to_token[row, start:end] = out_cache_loc[off : off + n].to(req_to_token.dtype)
        off += n


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    """For every layer buffer (raw data pointer, per-slot stride in bytes), copy slot
    src_loc[j] to slot tgt_loc[j]. Source slots are read before any target is written,
    so overlapping moves behave like a gather followed by a scatter."""
    ptrs = data_ptrs.tolist()
    strides_b = strides.tolist()
    src = src_loc.tolist()
    tgt = tgt_loc.tolist()
    if not src:
        return
    for base, stride in zip(ptrs, strides_b):
        staged = [ctypes.create_string_buffer(stride) for _ in src]
        for buf, s in zip(staged, src):
            ctypes.memmove(buf, base + s * stride, stride)
        for buf, t in zip(staged, tgt):
            ctypes.memmove(base + t * stride, buf, stride)


def _speculative_only(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel.{name}: speculative decoding is not supported by atts' CPU shim"
        )

    kernel.__name__ = name
    return kernel


globals().update({name: _speculative_only(name) for name in _SPECULATIVE_ONLY})
