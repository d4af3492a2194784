"""The refill engine's draw at temperature T in two Triton kernels: softmax(logits / T) sampled by its inverse CDF.

A sampled decode step draws one token per row from softmax(logits / T). In torch (Gumbel-max) that is
the logits cast to float32, divided by T, uniform noise for every logit, two logs, a negation, a
subtraction and an argmax: about ten passes over rows x vocabulary float32 values, ~2 GB a step for
200 rows and Qwen's 152k-token vocabulary, more than the whole decode step of Qwen2.5-0.5B reads in
weights. Noise for every logit made in the kernel instead is compute-bound (Philox rounds and two logs
per logit: 186 µs a step on an H200, bench/results/2026-12-03-session7). Here one uniform per row
(from the engine's seeded generator) picks the token where the row's cumulative probability passes it:

1. `_partial_kernel`, one program per (row, slice of 16,384 logits): the slice's max of logits / T and
   its sum of exp(logit / T - max), in one pass over the logits in their own dtype;
2. `_pick_kernel`, one program per row: the row's total from the slices, the slice where
   uniform x total falls, and within it the first token whose running sum passes the rest.

The logits are read about 1.1 times and nothing of vocabulary size is written. Rounding can leave
the running sum just short of the target in the last slice; the slice's last token of nonzero
probability is drawn then. A token of probability 0 (a -inf logit) is never drawn. The same uniforms
give the same tokens, so a seeded job is reproducible on the same device. Only the plain temperature
draw is fused: top-k, top-p and min-p keep the torch path (jobs.generation.filters). Where it runs is
jobs.generation.decode_attention.available, as for the project's other kernels.
tests/test_sample_kernel.py checks the distribution under Triton's interpreter, and
bench/decode_attention_check.py on CUDA over 100,000 draws.
"""

from __future__ import annotations

import torch

from jobs.generation.decode_attention import tl, triton

__all__ = ["sample_softmax"]

BLOCK = 2048  # logits a program reads per inner step
STEPS = 8  # inner steps of a slice: 16,384 logits, so a 152k-token row is 10 slices


def sample_softmax(
    logits: torch.Tensor, temperature: float, uniform: torch.Tensor, *, block: int = BLOCK
) -> torch.Tensor:
    """One token per row of `logits` [rows, vocab] (any float dtype) drawn from softmax(logits / temperature), by
    `uniform` [rows] float32 in [0, 1). Returns [rows] int64 token ids.

    `block` (a power of two): logits a program reads per inner step, STEPS steps a slice (tests under Triton's
    interpreter take small ones; the draw is the same for any block up to rounding).
    """
    assert temperature > 0.0, "temperature 0 is greedy: an argmax"
    rows, vocab = logits.shape
    assert logits.stride(-1) == 1, "the vocabulary dimension is contiguous"
    chunk = STEPS * block
    parts = triton.cdiv(vocab, chunk)
    part_max = torch.empty((rows, parts), dtype=torch.float32, device=logits.device)
    part_sum = torch.empty((rows, parts), dtype=torch.float32, device=logits.device)
    token = torch.empty(rows, dtype=torch.int64, device=logits.device)
    scale = 1.0 / temperature
    _partial_kernel[(rows, parts)](logits, logits.stride(0), vocab, scale, part_max, part_sum, CHUNK=chunk, BLOCK=block)
    _pick_kernel[(rows,)](
        logits, logits.stride(0), vocab, scale, part_max, part_sum, uniform, token, parts,
        PARTS_PAD=max(2, triton.next_power_of_2(parts)), CHUNK=chunk, BLOCK=block,
    )
    return token


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _partial_kernel(  # type: ignore[no-untyped-def]  # Triton reads annotations as types
        Logits, stride, vocab, scale, Max, Sum, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row, part = tl.program_id(0), tl.program_id(1)
        parts = tl.num_programs(1)
        lanes = tl.arange(0, BLOCK)
        lane_max = tl.full([BLOCK], float("-inf"), tl.float32)
        lane_sum = tl.zeros([BLOCK], tl.float32)
        base = Logits + row.to(tl.int64) * stride
        for block in range(part * CHUNK, part * CHUNK + CHUNK, BLOCK):
            at = block + lanes
            x = tl.load(base + at, mask=at < vocab, other=float("-inf")).to(tl.float32) * scale
            new_max = tl.maximum(lane_max, x)
            live = new_max > float("-inf")  # a lane that has seen only -inf keeps a zero sum (no -inf - -inf)
            rescale = tl.where(live, tl.exp(lane_max - new_max), 0.0)
            lane_sum = lane_sum * rescale + tl.where(live, tl.exp(x - new_max), 0.0)
            lane_max = new_max
        top = tl.max(lane_max, 0)
        weights = tl.where(lane_max > float("-inf"), tl.exp(lane_max - top), 0.0)
        tl.store(Max + row * parts + part, top)
        tl.store(Sum + row * parts + part, tl.sum(lane_sum * weights, 0))

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _pick_kernel(  # type: ignore[no-untyped-def]  # Triton reads annotations as types
        Logits, stride, vocab, scale, Max, Sum, Uniform, Token, parts,
        PARTS_PAD: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        p = tl.arange(0, PARTS_PAD)
        part_max = tl.load(Max + row * parts + p, mask=p < parts, other=float("-inf"))
        part_sum = tl.load(Sum + row * parts + p, mask=p < parts, other=0.0)
        top = tl.max(part_max, 0)
        weight = tl.where(part_max > float("-inf"), part_sum * tl.exp(part_max - top), 0.0)
        target = tl.load(Uniform + row) * tl.sum(weight, 0)
        # The slice where the cumulative weight passes the target, and what is left of the target within it.
        cumulative = tl.cumsum(weight, 0)
        part = tl.minimum(tl.sum((cumulative <= target).to(tl.int32), 0), parts - 1)
        rest = target - tl.sum(tl.where(p < part, weight, 0.0), 0)
        lanes = tl.arange(0, BLOCK)
        base = Logits + row.to(tl.int64) * stride
        running = 0.0
        chosen = vocab  # none yet
        last = part * CHUNK  # the slice's last token of nonzero probability: the draw if rounding leaves it short
        for block in range(part * CHUNK, part * CHUNK + CHUNK, BLOCK):
            at = block + lanes
            x = tl.load(base + at, mask=at < vocab, other=float("-inf")).to(tl.float32) * scale
            prob = tl.where(x > float("-inf"), tl.exp(x - top), 0.0)
            passed = (tl.cumsum(prob, 0) + running > rest) & (prob > 0.0)
            chosen = tl.minimum(chosen, tl.min(tl.where(passed, at, vocab), 0))
            last = tl.maximum(last, tl.max(tl.where(prob > 0.0, at, -1), 0))
            running += tl.sum(prob, 0)
        tl.store(Token + row, tl.where(chosen < vocab, chosen, last).to(tl.int64))
