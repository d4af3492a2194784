"""The refill engine's KV cache and attention: every slot (row) with its own length.

`SlotCache` duck-types the one method transformers' attention layers call on a cache;
`packed_attention` and `prefill_attention_kernels` pick the attention kernels that
suit its decode and prefill shapes: on CUDA the decode step attends to each row's live
positions only (jobs.generation.decode_attention), elsewhere masked SDPA over the capacity.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from jobs.generation.decode_attention import available as decode_attention_available
from jobs.generation.decode_attention import decode_attention

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class SlotCache:
    """Per-layer KV tensors [slots, kv_heads, capacity, head_dim], each slot with its own length.

    Duck-types the one method transformers' attention layers call on a cache, `update`.
    Before a prefill the caller calls `prefill_into` (mode "prefill"): left-padded prompts,
    prompt i's keys/values, padding dropped, go to positions [0, L_i) of each of its slots, in
    one gather and one scatter per layer, and the call's own keys/values are returned (the
    prompts attend to themselves); mode "decode" writes each row's key/value at
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
        self.mode = "decode"
        # Set by `prefill_into` for one prefill: each target slot and the prompt row it takes, and the
        # positions that shift each left-padded row to start at 0.
        self.prefill_slots = self.rows[:0]
        self.prefill_source = self.rows[:0]
        self.prefill_shift = self.rows[:0, None]

    def prefill_into(self, groups: list[tuple[list[int], int]], width: int) -> None:
        """The next forward is a prefill of left-padded prompts, prompt i (`pad` positions of padding) going to
        each of its `slots` (`groups[i]` = (slots, pad))."""
        device = self.rows.device
        self.mode = "prefill"
        self.prefill_slots = torch.tensor([s for slots, _ in groups for s in slots], device=device)
        self.prefill_source = torch.tensor([i for i, (slots, _) in enumerate(groups) for _ in slots], device=device)
        pads = torch.tensor([pad for _, pad in groups], device=device)
        self.prefill_shift = (torch.arange(width, device=device)[None, :] + pads[:, None]).clamp(max=width - 1)

    def _unpadded(self, states: torch.Tensor) -> torch.Tensor:
        """[rows, heads, width, dim] left-padded -> [target slots, heads, width, dim] starting at position 0.

        Positions past a prompt's length hold copies of its last token: no row reads them before
        its decode steps overwrite them (a row attends to positions up to its own write position)."""
        rows, heads, width, dim = states.shape
        index = self.prefill_shift[:, None, :, None].expand(rows, heads, width, dim)
        return states.gather(2, index)[self.prefill_source]

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.mode == "prefill":
            width = key.shape[2]
            keys[self.prefill_slots, :, :width] = self._unpadded(key).to(keys.dtype)
            values[self.prefill_slots, :, :width] = self._unpadded(value).to(values.dtype)
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

LIVE_DECODE = "reasonfleet_live_decode"


def live_decode_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          **kwargs: Any) -> tuple[torch.Tensor, None]:
    """One query token per row attending to its row's live positions only (`decode_lengths`, passed with the
    forward's arguments), through jobs.generation.decode_attention's kernel; anything else as packed SDPA."""
    lengths = kwargs.get("decode_lengths")
    if query.shape[2] != 1 or lengths is None:
        return packed_decode_attention(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return decode_attention(query, key, value, lengths, scale), None


AttentionInterface.register(LIVE_DECODE, live_decode_attention)

DecodeKernel = Literal["auto", "sdpa", "live"]


def decode_kernel(model: PreTrainedModel, requested: DecodeKernel = "auto") -> DecodeKernel:
    """The decode attention a refill run uses: `live` (the Triton kernel over each row's live positions) where
    Triton runs for the model's device, else `sdpa` (masked SDPA over the whole capacity)."""
    device = next(model.parameters()).device
    if requested == "live" and not decode_attention_available(device):
        raise ValueError("decode attention 'live' needs Triton on CUDA, compute capability 8.0 or later "
                         "(or TRITON_INTERPRET=1)")
    if requested != "auto":
        return requested
    return "live" if decode_attention_available(device) else "sdpa"


@contextmanager
def packed_attention(model: PreTrainedModel, kernel: DecodeKernel = "sdpa") -> Iterator[None]:
    """The model's SDPA attention swapped for the decode kernel: `live` anywhere it was chosen; `sdpa` on
    CUDA as `packed_decode_attention` (on CPU the packed shape is the slower one: SmolLM2, 2 cores)."""
    config = model.config
    before = config._attn_implementation
    if before == "sdpa" and kernel == "live":
        config._attn_implementation = LIVE_DECODE
    elif before == "sdpa" and next(model.parameters()).is_cuda:
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
