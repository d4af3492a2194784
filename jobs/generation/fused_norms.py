"""RMSNorm as one fused kernel for the refill engine's decode step on CUDA.

transformers' Llama/Qwen/Mistral RMSNorm runs about eight small kernels a call (casts, pow,
mean, add, rsqrt, two multiplies). A decode step of a 200-row batch is bound by such small
kernels at these sizes: Qwen3-8B has 145 norms a step (input, post-attention, q and k norms in
36 layers, and the last), Qwen2.5-0.5B 49. `torch.rms_norm` normalises in float32 inside one
kernel and rounds to the input's dtype once, where transformers casts the normalised float32
to the input dtype: the same rounding points, so the result differs at most by the order of
the mean's reduction. The weight multiply stays a separate bf16 multiply, as in transformers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# Norm classes whose forward is exactly weight * (x.float() * rsqrt(mean(x²) + eps)).to(x.dtype).
SAME_FORMULA = frozenset({"LlamaRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm", "MistralRMSNorm"})


class _FusedNorm:
    def __init__(self, norm: Any) -> None:
        self.weight, self.eps = norm.weight, norm.variance_epsilon

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        normed = torch.rms_norm(hidden, (hidden.shape[-1],), None, self.eps)
        scaled: torch.Tensor = self.weight * normed  # the weight is an untyped module attribute
        return scaled


@contextmanager
def fused_rms_norms(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, every RMSNorm of a known formula in `model` runs as `torch.rms_norm`; yields how many."""
    swapped = [m for m in model.modules() if type(m).__name__ in SAME_FORMULA and hasattr(m, "variance_epsilon")]
    for module in swapped:
        module.forward = _FusedNorm(module)  # an instance attribute shadows the class's forward
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            del module.forward
