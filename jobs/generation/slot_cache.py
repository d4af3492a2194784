"""The refill engine's KV cache and attention: every slot (row) with its own length.

`SlotCache` duck-types the one method transformers' attention layers call on a cache;
`packed_attention` and `prefill_attention_kernels` pick the attention kernels that
suit its decode and prefill shapes on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class SlotCache:
    """Per-layer KV tensors [slots, kv_heads, capacity, head_dim], each slot with its own length.

    Duck-types the one method transformers' attention layers call on a cache, `update`.
    Before a forward the caller sets `mode`: "prefill" takes left-padded prompts, one per
    entry of `groups` (slots, padding): prompt i's keys/values, padding dropped, go to
    positions [0, L_i) of each of its slots, and the call's own keys/values are returned
    (the prompts attend to themselves); "decode" writes each row's key/value at
    `write_at[row]` and returns the whole cache, which the caller's mask limits to each
    row's own positions.
    """

    def __init__(self, config: Any, slots: int, capacity: int, device: str, dtype: torch.dtype) -> None:
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.rows = torch.arange(slots, device=device)
        self.write_at = torch.zeros(slots, dtype=torch.long, device=device)
        self.groups: list[tuple[torch.Tensor, int]] = []
        self.mode = "decode"

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.mode == "prefill":
            width = key.shape[2]
            for row, (targets, pad) in enumerate(self.groups):
                keys[targets, :, : width - pad] = key[row, :, pad:].to(keys.dtype)
                values[targets, :, : width - pad] = value[row, :, pad:].to(values.dtype)
            return key, value
        keys[self.rows, :, self.write_at] = key[:, :, 0].to(keys.dtype)
        values[self.rows, :, self.write_at] = value[:, :, 0].to(values.dtype)
        return keys, values


PACKED_DECODE = "reasonfleet_packed_decode"


def packed_decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """SDPA that, for one query token under grouped-query attention, runs on the key/value heads.

    With a mask, transformers' SDPA path copies every key/value head once per query head
    it serves (`repeat_kv`: 7 copies of the whole cache per layer per step for Qwen2.5),
    which costs more than the attention itself. One query token's heads of a group are
    instead treated as `groups` queries of their shared key/value head; the mask, the same
    for all heads, broadcasts. Prompts (several query tokens) take transformers' SDPA.
    """
    groups = getattr(module, "num_key_value_groups", 1)
    if query.shape[2] != 1 or groups == 1:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, _, dim = query.shape
    packed = query.reshape(batch, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_DECODE, packed_decode_attention)


@contextmanager
def packed_attention(model: PreTrainedModel) -> Iterator[None]:
    """On CUDA, the model's SDPA attention swapped for `packed_decode_attention` (other kinds
    left as they are). On CPU the packed shape is the slower one (SmolLM2, 2 cores)."""
    config = model.config
    before = config._attn_implementation
    if before == "sdpa" and next(model.parameters()).is_cuda:
        config._attn_implementation = PACKED_DECODE
    try:
        yield
    finally:
        config._attn_implementation = before


def prefill_attention_kernels(device: str) -> Any:
    """On CUDA, SDPA without its cuDNN backend: cuDNN builds a plan for each new shape, and
    every admission's prefill has a new one (about 150 ms a prefill on an H100 with it)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not device.startswith("cuda"):
        return nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
