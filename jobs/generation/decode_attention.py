"""Decode attention over each row's live keys only: a split-KV ("flash decoding") Triton kernel.

The refill engine's slot cache has one capacity for every row (longest prompt + max_new_tokens),
but a row attends only to its first `lengths[row]` positions. SDPA with a mask reads the whole
capacity for every row and step; at the Qwen3-8B shape with 200 slots that was 45% of the
decode step's CUDA time (bench/results/2026-11-24-session5/profile-8b.log). This kernel reads
only the live keys and values:

- one program per (row, key/value head, split of the keys): the query heads that share that
  key/value head (grouped-query attention) are its query rows, so each key block is read once
  per group, not once per query head (no `repeat_kv` copies);
- a split past the row's length returns at once; the others run an online softmax over their
  blocks and write a partial output with its log-sum-exp;
- a second kernel combines the splits.

Shapes are fixed for a given slot count and capacity (the lengths are a device tensor), so
the step stays capturable as a CUDA graph. `decode_attention_reference` is the same function
in plain torch; tests compare the two (on CPU through Triton's interpreter, on CUDA in
bench/decode_attention_check.py).
"""

from __future__ import annotations

import math
import os

import torch

try:  # Triton ships with CUDA builds of torch; CPU builds and some platforms lack it. fused_decode imports it here.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

__all__ = ["available", "decode_attention", "decode_attention_reference", "tl", "triton"]

BLOCK_N = 64  # keys per inner step
PROGRAMS_PER_SM = 8  # enough splits that small batches (or few key/value heads) still fill the GPU


def available(device: torch.device | str) -> bool:
    """Whether the project's Triton kernels (this one, jobs.generation.fused_decode's, jobs.generation.sample_kernel's)
    run for tensors on `device`: Triton's interpreter, or CUDA from Ampere on (before it Triton's dot has no bf16,
    and Triton no longer supports the oldest cards, a gaming PC's GTX 10-series among them)."""
    if triton is None:
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: torch.Tensor,
                     scale: float, splits: int | None = None) -> torch.Tensor:
    """Attention of one query token per row over its row's first `lengths[row]` cached positions.

    query [rows, heads, 1, dim]; key, value [rows, kv_heads, capacity, dim] (heads a multiple of
    kv_heads; query head j uses key/value head j // (heads / kv_heads), as transformers' repeat_kv);
    lengths [rows] int, each in [1, capacity]. Returns [rows, 1, heads, dim] in the query's dtype,
    the layout transformers' attention functions return.
    """
    rows, heads, _, dim = query.shape
    kv_heads, capacity = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    splits = splits or _splits(query.device, rows * kv_heads, capacity)
    chunk = math.ceil(math.ceil(capacity / splits) / BLOCK_N) * BLOCK_N
    splits = math.ceil(capacity / chunk)
    q = query.reshape(rows, kv_heads, groups, dim)
    partial = torch.empty((rows, kv_heads, splits, groups, dim), dtype=torch.float32, device=query.device)
    lse = torch.empty((rows, kv_heads, splits, groups), dtype=torch.float32, device=query.device)
    out = torch.empty((rows, kv_heads, groups, dim), dtype=query.dtype, device=query.device)
    assert key.stride(-1) == 1 and value.stride(-1) == 1, "the cache's last dimension is contiguous"
    dim_pad = triton.next_power_of_2(dim)
    group_pad = max(16, triton.next_power_of_2(groups))  # tl.dot needs 16 rows at least
    _partial_kernel[(rows, kv_heads, splits)](
        q, key, value, lengths, partial, lse,
        *q.stride()[:3], *key.stride()[:3], *value.stride()[:3], *partial.stride()[:4], *lse.stride()[:3],
        scale, chunk,
        GROUPS=groups, GROUP_PAD=group_pad, DIM=dim, DIM_PAD=dim_pad, BLOCK=BLOCK_N,
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32",  # float32 stays float32 (no TF32 rounding)
    )
    _combine_kernel[(rows, kv_heads, groups)](
        partial, lse, out, *partial.stride()[:4], *lse.stride()[:3], *out.stride()[:3],
        SPLITS=splits, SPLIT_PAD=triton.next_power_of_2(splits), DIM=dim, DIM_PAD=dim_pad,
    )
    return out.reshape(rows, 1, heads, dim)


def decode_attention_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: torch.Tensor,
                               scale: float) -> torch.Tensor:
    """`decode_attention` in plain torch (float32 softmax), for tests."""
    rows, heads, _, dim = query.shape
    kv_heads, capacity = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    q = query.reshape(rows, kv_heads, groups, dim).float()
    scores = torch.einsum("bhgd,bhnd->bhgn", q, key.float()) * scale
    live = torch.arange(capacity, device=key.device)[None, :] < lengths[:, None]
    scores = scores.masked_fill(~live[:, None, None, :], float("-inf"))
    out = torch.einsum("bhgn,bhnd->bhgd", scores.softmax(-1), value.float())
    return out.reshape(rows, 1, heads, dim).to(query.dtype)


def _splits(device: torch.device, programs: int, capacity: int) -> int:
    """Splits of the keys so that rows × kv_heads × splits programs fill the GPU a few times over."""
    if device.type != "cuda":
        return min(4, math.ceil(capacity / BLOCK_N))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    wanted = math.ceil(PROGRAMS_PER_SM * sms / max(1, programs))
    return max(1, min(wanted, math.ceil(capacity / (2 * BLOCK_N))))


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _partial_kernel(  # type: ignore[no-untyped-def]  # Triton reads annotations as types
        Q, K, V, Lengths, Partial, Lse,
        sq_b, sq_h, sq_g, sk_b, sk_h, sk_n, sv_b, sv_h, sv_n,
        sp_b, sp_h, sp_s, sp_g, sl_b, sl_h, sl_s,
        scale, chunk,
        GROUPS: tl.constexpr, GROUP_PAD: tl.constexpr, DIM: tl.constexpr, DIM_PAD: tl.constexpr, BLOCK: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        row, head, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        length = tl.load(Lengths + row).to(tl.int32)
        start = split * chunk
        end = tl.minimum(start + chunk, length)
        g = tl.arange(0, GROUP_PAD)
        d = tl.arange(0, DIM_PAD)
        n = tl.arange(0, BLOCK)
        q = tl.load(Q + row * sq_b + head * sq_h + g[:, None] * sq_g + d[None, :],
                    mask=(g[:, None] < GROUPS) & (d[None, :] < DIM), other=0.0)
        best = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        total = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
        k_base = K + row * sk_b + head * sk_h
        v_base = V + row * sv_b + head * sv_h
        for block in range(start, end, BLOCK):
            at = block + n
            live = at < end
            k = tl.load(k_base + at[:, None] * sk_n + d[None, :], mask=live[:, None] & (d[None, :] < DIM), other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            scores = tl.where(live[None, :], scores, float("-inf"))
            new_best = tl.maximum(best, tl.max(scores, 1))
            weights = tl.exp(scores - new_best[:, None])
            rescale = tl.exp(best - new_best)
            total = total * rescale + tl.sum(weights, 1)
            v = tl.load(v_base + at[:, None] * sv_n + d[None, :], mask=live[:, None] & (d[None, :] < DIM), other=0.0)
            acc = acc * rescale[:, None] + tl.dot(weights.to(v.dtype), v, input_precision=PRECISION)
            best = new_best
        filled = total > 0.0  # a split past the row's length read nothing: weight 0 in the combine
        result = tl.where(filled[:, None], acc / tl.where(filled, total, 1.0)[:, None], 0.0)
        log_sum = tl.where(filled, best + tl.log(tl.where(filled, total, 1.0)), float("-inf"))
        base = row * sp_b + head * sp_h + split * sp_s
        inside = (g[:, None] < GROUPS) & (d[None, :] < DIM)
        tl.store(Partial + base + g[:, None] * sp_g + d[None, :], result, mask=inside)
        tl.store(Lse + row * sl_b + head * sl_h + split * sl_s + g, log_sum, mask=g < GROUPS)

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _combine_kernel(  # type: ignore[no-untyped-def]  # Triton reads annotations as types
        Partial, Lse, Out,
        sp_b, sp_h, sp_s, sp_g, sl_b, sl_h, sl_s, so_b, so_h, so_g,
        SPLITS: tl.constexpr, SPLIT_PAD: tl.constexpr, DIM: tl.constexpr, DIM_PAD: tl.constexpr,
    ):
        row, head, group = tl.program_id(0), tl.program_id(1), tl.program_id(2)
        s = tl.arange(0, SPLIT_PAD)
        d = tl.arange(0, DIM_PAD)
        lse = tl.load(Lse + row * sl_b + head * sl_h + s * sl_s + group, mask=s < SPLITS, other=float("-inf"))
        weights = tl.exp(lse - tl.max(lse, 0))
        weights = weights / tl.sum(weights, 0)
        parts = tl.load(Partial + row * sp_b + head * sp_h + s[:, None] * sp_s + group * sp_g + d[None, :],
                        mask=(s[:, None] < SPLITS) & (d[None, :] < DIM), other=0.0)
        result = tl.sum(parts * weights[:, None], 0)
        tl.store(Out + row * so_b + head * so_h + group * so_g + d, result.to(Out.dtype.element_ty), mask=d < DIM)
