"""LoRA projections as one autograd function each: frozen base (plain or NF4) plus adapter.

A small model's training step is bound by kernel launches and Python, not by its GEMMs:
peft runs ~10 small kernels and several Python layers per adapted projection and pass
(a defensive clone, dtype casts, dropout, two linears, a scale, an add; bitsandbytes
dequantizes the NF4 weight, including its double-quantized scales, on every call).
`fuse_lora` swaps the forward of peft's LoRA layers for `_LoraLinear`, which does the
same arithmetic with about half the kernels, in-place adds and no per-call Python
checks. peft's modules and parameters stay in place, so saving, loading and checkpoint
state are peft's own.

Arithmetic: y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ. The adapter branch is computed in the
activations' dtype (bf16 on CUDA) with the adapter weights kept in their own dtype
(fp32 master weights by default), as autocast would; gradients come back in that dtype.
The NF4 weight is dequantized again in backward rather than kept, like bitsandbytes does.
Double-quantized NF4 scales are expanded once per layer and kept (4 bytes per 64
weights, ~20 MB for a 0.5B model) instead of on every call.

The adapter weights' casts to the activations' dtype are kept too, until the weights change:
a step runs each projection's forward twice (gradient checkpointing recomputes it), and each
cast is a kernel launch plus dispatch, 672 a step at Qwen2.5-0.5B, whose step is bound by
launches (bench/results/2026-12-03-session7). A kept cast is dropped when the weight's version
counter moves (an in-place write through torch) or when the training loop calls
`adapters_changed()` after its optimiser step (an optimiser kernel may write without telling torch).
"""

from __future__ import annotations

from typing import Any

import torch

ADAPTER = "default"
_updates = 0  # optimiser steps announced by adapters_changed(): part of every kept cast's key


def adapters_changed() -> None:
    """The adapter weights were written (an optimiser step): casts kept from before are stale."""
    global _updates
    _updates += 1


def fuse_lora(model: Any) -> int:
    """Swap the forward of every fusable peft LoRA layer in `model`; returns how many were swapped.

    Fusable: one vanilla LoRA adapter (no DoRA or other variant, not merged) on a frozen
    `torch.nn.Linear` or bitsandbytes `Linear4bit`. Anything else keeps peft's forward.
    """
    fused = 0
    for module in model.modules():
        if _fusable(module):
            base = module.get_base_layer()
            if _is_nf4(base):
                # Expanded here, not on first use: a cache filled inside a compiled region breaks torch.compile.
                base._fused_absmax = _expanded_absmax(base.weight.quant_state)
            module.forward = _FusedForward(module)
            fused += 1
    return fused


def _fusable(module: Any) -> bool:
    from peft.tuners.lora import LoraLayer

    if not isinstance(module, LoraLayer) or list(module.lora_A.keys()) != [ADAPTER]:
        return False
    if module.lora_variant or getattr(module, "merged_adapters", []) or module.lora_bias.get(ADAPTER, False):
        return False
    base = module.get_base_layer()
    dropout = module.lora_dropout[ADAPTER]
    if any(p.requires_grad for p in base.parameters()):
        return False  # a trainable base needs its own gradient, which the fused function does not compute
    plain = _is_nf4(base) or type(base) is torch.nn.Linear
    return plain and isinstance(dropout, (torch.nn.Dropout, torch.nn.Identity))


def _is_nf4(base: Any) -> bool:
    try:
        from bitsandbytes.nn.modules import Linear4bit  # its home: bitsandbytes.nn re-exports it only implicitly
    except ImportError:
        return False
    return isinstance(base, Linear4bit) and getattr(base.weight, "quant_state", None) is not None


class _FusedForward:
    """The replacement forward of one LoRA layer, set as the layer's instance attribute `forward`."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.casts: tuple[tuple[Any, ...], torch.Tensor, torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        layer = self.layer
        if layer.disable_adapters or args or kwargs:  # adapters switched off, or a peft feature we don't fuse
            unfused: torch.Tensor = type(layer).forward(layer, x, *args, **kwargs)
            return unfused
        dropout = layer.lora_dropout[ADAPTER]
        p = dropout.p if isinstance(dropout, torch.nn.Dropout) and layer.training else 0.0
        base = layer.get_base_layer()
        a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        a_c, b_c = self._cast(a, b, x.dtype)
        out: torch.Tensor = _LoraLinear.apply(  # type: ignore[no-untyped-call]  # untyped in torch
            x, a, b, a_c, b_c, base, float(layer.scaling[ADAPTER]), p
        )
        return out

    def _cast(
        self, a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """The adapter weights in `dtype`, outside autograd (the function computes their gradients itself). Not kept
        under torch.compile (`train.compile`), which fuses the casts into its kernels and cannot trace the key, nor
        while a CUDA graph is captured (jobs.training.micro_step): each replay must cast the weights of its step."""
        if torch.compiler.is_compiling() or (a.is_cuda and torch.cuda.is_current_stream_capturing()):
            return None, None  # cast inside the function (dynamo cannot trace a tensor passed twice to it)
        key = (_updates, dtype, a.data_ptr(), a._version, b.data_ptr(), b._version)
        if self.casts is None or self.casts[0] != key:
            with torch.no_grad():
                self.casts = (key, a.to(dtype), b.to(dtype))
        return self.casts[1], self.casts[2]


def dense_weight(base: Any, dtype: torch.dtype) -> torch.Tensor:
    """The frozen base weight, [out, in], in `dtype` (dequantized when NF4)."""
    if type(base) is torch.nn.Linear:  # not isinstance: bitsandbytes' Linear4bit subclasses it
        weight: torch.Tensor = base.weight
        return weight if weight.dtype == dtype else weight.to(dtype)
    state = base.weight.quant_state
    absmax = getattr(base, "_fused_absmax", None)
    if absmax is None:  # a layer dense_weight is called on without fuse_lora
        absmax = _expanded_absmax(state)
    dense: torch.Tensor = torch.ops.bitsandbytes.dequantize_4bit.default(
        base.weight.data, absmax, state.blocksize, state.quant_type, state.shape, dtype
    )
    return dense


def _expanded_absmax(state: Any) -> torch.Tensor:
    import bitsandbytes.functional as bnbf

    absmax: torch.Tensor = state.absmax  # bitsandbytes' QuantState, passed in untyped
    if not state.nested:
        return absmax.float()
    expanded: torch.Tensor = bnbf.dequantize_blockwise(absmax, state.state2) + state.offset
    return expanded.float()


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, a_c: torch.Tensor | None, b_c: torch.Tensor | None,
        base: Any, scale: float, p: float,
    ) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        weight = dense_weight(base, x.dtype)
        bias = base.bias
        out = torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias.to(x.dtype), rows, weight.t())
        mask = None
        dropped = rows
        if p > 0.0:
            dropped, mask = torch.native_dropout(rows, p, True)
        if a_c is None or b_c is None:  # a and b in x's dtype, unless the caller kept them (_FusedForward._cast)
            a_c, b_c = a.to(x.dtype), b.to(x.dtype)
        down = torch.mm(dropped, a_c.t())  # [tokens, rank]
        out.addmm_(down, b_c.t(), alpha=scale)
        ctx.save_for_backward(dropped, down, a_c, b_c, mask)
        ctx.base, ctx.scale, ctx.p, ctx.shape = base, scale, p, x.shape
        ctx.a_dtype, ctx.b_dtype = a.dtype, b.dtype
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        dropped, down, a_c, b_c, mask = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1]).to(down.dtype)
        grad_down = torch.mm(grad, b_c).mul_(ctx.scale)  # [tokens, rank]
        grad_b = torch.mm(grad.t(), down).mul_(ctx.scale)
        grad_a = torch.mm(grad_down.t(), dropped)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad, dense_weight(ctx.base, grad.dtype))
            if mask is None:
                grad_x.addmm_(grad_down, a_c)
            else:
                grad_x += torch.ops.aten.native_dropout_backward(torch.mm(grad_down, a_c), mask, 1.0 / (1.0 - ctx.p))
            grad_x = grad_x.view(ctx.shape)
        return grad_x, grad_a.to(ctx.a_dtype), grad_b.to(ctx.b_dtype), None, None, None, None, None
