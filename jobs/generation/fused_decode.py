"""Fewer, larger kernels for the refill engine's decode step on CUDA: fused RMSNorm and rotary embedding.

A decode step of a 200-row batch at these model sizes is bound by small kernels besides its
matmuls and attention. transformers' Llama/Qwen/Mistral layers run about eight kernels a
RMSNorm (casts, pow, mean, add, rsqrt, two multiplies) and about ten a rotary embedding
(multiplies, a negation and a concatenation for each of the query and the key). Qwen3-8B has
145 norms and 36 rotary embeddings a step, Qwen2.5-0.5B 49 and 24. Within `FusedDecodeOps.active()`:

- a RMSNorm is `torch.rms_norm` (one kernel, normalising in float32 and rounding to the input's
  dtype once, as transformers' cast does) and the weight multiply;
- the rotary embedding is one Triton kernel for the query and the key (float32 arithmetic, rounded
  once; transformers rounds each bf16 product).

The engine uses them in its prefills too, where the norms and rotary run over whole prompts.

The values match transformers' to rounding (tests/test_decode_attention.py checks both).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from jobs.generation.decode_attention import available as triton_available
from jobs.generation.decode_attention import tl, triton

# Norm classes whose forward is exactly weight * (x.float() * rsqrt(mean(x²) + eps)).to(x.dtype).
SAME_NORM = frozenset({"LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm"})
# Attention classes whose module's apply_rotary_pos_emb is q·cos + rotate_half(q)·sin (and the same for k).
SAME_ROTARY = frozenset({"LlamaAttention", "Qwen2Attention", "Qwen3Attention", "MistralAttention"})
ROTARY = "apply_rotary_pos_emb"


class _FusedNorm:
    def __init__(self, norm: Any) -> None:
        self.weight, self.eps = norm.weight, norm.variance_epsilon

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        normed = torch.rms_norm(hidden, (hidden.shape[-1],), None, self.eps)
        scaled: torch.Tensor = self.weight * normed  # the weight is an untyped module attribute
        return scaled


class FusedDecodeOps:
    """The patches for one model, found once (an engine enters them at every prefill, and at every decode step
    when it decodes without a CUDA graph): RMSNorms of a known formula as `torch.rms_norm`, and the rotary
    embedding as one Triton kernel where Triton runs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.norms = [m for m in model.modules() if type(m).__name__ in SAME_NORM and hasattr(m, "variance_epsilon")]
        modules = {sys.modules[type(m).__module__] for m in model.modules() if type(m).__name__ in SAME_ROTARY}
        on_triton = triton_available(next(model.parameters()).device)
        self.rotary = {m: getattr(m, ROTARY) for m in modules if on_triton and hasattr(m, ROTARY)}
        self.fused_norms = {id(norm): _FusedNorm(norm) for norm in self.norms}
        self.fused_rotary = {module: _fused_rotary(original) for module, original in self.rotary.items()}

    @contextmanager
    def active(self) -> Iterator[None]:
        for norm in self.norms:
            norm.forward = self.fused_norms[id(norm)]  # an instance attribute shadows the class's forward
        for module, fused in self.fused_rotary.items():
            setattr(module, ROTARY, fused)  # the attention forward looks the name up at each call
        try:
            yield
        finally:
            for norm in self.norms:
                del norm.forward
            for module, original in self.rotary.items():
                setattr(module, ROTARY, original)


def _fused_rotary(original: Callable[..., Any]) -> Callable[..., Any]:
    def apply(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1) -> Any:
        if unsqueeze_dim != 1 or cos.shape[:2] != (q.shape[0], q.shape[2]) or q.shape[-1] % 2:
            return original(q, k, cos, sin, unsqueeze_dim)  # a layout this kernel does not take
        return rotate(q, k, cos, sin)

    return apply


def rotate(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [rows, heads, seq, dim], k [rows, kv_heads, seq, dim], cos/sin [rows, seq, dim] -> rotated (q, k), new
    contiguous tensors; one program per (row, position)."""
    rows, heads, seq, dim = q.shape
    kv_heads = k.shape[1]
    q_out = torch.empty_like(q, memory_format=torch.contiguous_format)
    k_out = torch.empty_like(k, memory_format=torch.contiguous_format)
    assert q.stride(-1) == k.stride(-1) == cos.stride(-1) == sin.stride(-1) == 1
    half = dim // 2
    _rotary_kernel[(rows * seq,)](
        q, k, cos, sin, q_out, k_out, seq,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        cos.stride(0), cos.stride(1), sin.stride(0), sin.stride(1),
        q_out.stride(0), q_out.stride(1), q_out.stride(2), k_out.stride(0), k_out.stride(1), k_out.stride(2),
        HQ=heads, HK=kv_heads, HQ_PAD=triton.next_power_of_2(heads), HK_PAD=triton.next_power_of_2(kv_heads),
        HALF=half, HALF_PAD=triton.next_power_of_2(half),
    )
    return q_out, k_out


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _rotate(X, Out, x_at, out_at, sx_h, so_h, c1, c2, s1, s2,  # type: ignore[no-untyped-def]  # Triton reads annotations
                H: tl.constexpr, H_PAD: tl.constexpr, HALF: tl.constexpr, HALF_PAD: tl.constexpr):
        h = tl.arange(0, H_PAD)[:, None]
        d = tl.arange(0, HALF_PAD)[None, :]
        inside = (h < H) & (d < HALF)
        x1 = tl.load(X + x_at + h * sx_h + d, mask=inside, other=0.0).to(tl.float32)
        x2 = tl.load(X + x_at + h * sx_h + HALF + d, mask=inside, other=0.0).to(tl.float32)
        kind = Out.dtype.element_ty
        tl.store(Out + out_at + h * so_h + d, (x1 * c1 - x2 * s1).to(kind), mask=inside)
        tl.store(Out + out_at + h * so_h + HALF + d, (x2 * c2 + x1 * s2).to(kind), mask=inside)

    # Not specialised on the prompt length: Triton would compile again for lengths of 1, multiples of 16 and the
    # rest, each in the middle of a run's prefills.
    @triton.jit(do_not_specialize=["seq"])  # type: ignore[untyped-decorator]  # untyped in triton
    def _rotary_kernel(Q, K, Cos, Sin, QOut, KOut, seq,  # type: ignore[no-untyped-def]  # Triton reads annotations
                       sq_b, sq_h, sq_s, sk_b, sk_h, sk_s, sc_b, sc_s, ss_b, ss_s,
                       sqo_b, sqo_h, sqo_s, sko_b, sko_h, sko_s,
                       HQ: tl.constexpr, HK: tl.constexpr, HQ_PAD: tl.constexpr, HK_PAD: tl.constexpr,
                       HALF: tl.constexpr, HALF_PAD: tl.constexpr):
        program = tl.program_id(0)
        row, at = program // seq, program % seq
        d = tl.arange(0, HALF_PAD)[None, :]
        inside = d < HALF
        cos = Cos + row * sc_b + at * sc_s
        sin = Sin + row * ss_b + at * ss_s
        c1 = tl.load(cos + d, mask=inside, other=0.0).to(tl.float32)
        c2 = tl.load(cos + HALF + d, mask=inside, other=0.0).to(tl.float32)
        s1 = tl.load(sin + d, mask=inside, other=0.0).to(tl.float32)
        s2 = tl.load(sin + HALF + d, mask=inside, other=0.0).to(tl.float32)
        _rotate(Q, QOut, row * sq_b + at * sq_s, row * sqo_b + at * sqo_s, sq_h, sqo_h, c1, c2, s1, s2,
                HQ, HQ_PAD, HALF, HALF_PAD)
        _rotate(K, KOut, row * sk_b + at * sk_s, row * sko_b + at * sko_s, sk_h, sko_h, c1, c2, s1, s2,
                HK, HK_PAD, HALF, HALF_PAD)
