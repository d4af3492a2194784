"""The refill engine's draw at temperature T as one Triton kernel: Gumbel-max over each row's logits.

A sampled decode step draws one token per row from softmax(logits / T). In torch that is the
logits cast to float32, divided by T, uniform noise drawn, two logs, a negation, a subtraction
and an argmax: about ten passes over rows x vocabulary float32 values, ~2 GB a step for 200
rows and Qwen's 152k-token vocabulary, more than the whole decode step of Qwen2.5-0.5B reads
in weights. `gumbel_argmax` reads the logits once, in their own dtype, and makes its uniform
noise inside the kernel (Philox, keyed by a seed drawn from the engine's generator each step and
by the logit's position), so the same seed gives the same tokens on the same device.

Each program takes one row's slice of the vocabulary and writes its best score and that
token; an argmax over the slices picks the row's token. Ties go to the lowest token id, as
torch.argmax's. Only the plain temperature draw is fused: top-k, top-p and min-p keep the torch
path (jobs.generation.filters). tests/test_sample_kernel.py checks the draw's distribution
under Triton's interpreter.
"""

from __future__ import annotations

import torch

from jobs.generation.decode_attention import available, tl, triton

__all__ = ["available", "gumbel_argmax"]

BLOCK = 2048  # logits a program reads per inner step
STEPS = 8  # inner steps a program: 16,384 logits, so a 152k-token row is 10 programs


def gumbel_argmax(logits: torch.Tensor, temperature: float, seed: torch.Tensor, *, block: int = BLOCK) -> torch.Tensor:
    """argmax over each row of logits / temperature + Gumbel noise: an exact draw from softmax(logits / temperature).

    logits [rows, vocab] (any float dtype; -inf never drawn); seed: a one-element int64 tensor on the logits'
    device (the noise is a function of it and of each logit's position). Returns [rows] int64 token ids.
    `block` (a power of two): logits a program reads per inner step, 8 steps a program (tests under Triton's
    interpreter take small ones; the draw is the same for any).
    """
    assert temperature > 0.0, "temperature 0 is greedy: an argmax, no noise"
    rows, vocab = logits.shape
    assert logits.stride(-1) == 1, "the vocabulary dimension is contiguous"
    parts = triton.cdiv(vocab, STEPS * block)
    best = torch.empty((rows, parts), dtype=torch.float32, device=logits.device)
    token = torch.empty((rows, parts), dtype=torch.int32, device=logits.device)
    _gumbel_kernel[(rows, parts)](
        logits, logits.stride(0), vocab, seed, float(temperature), best, token, CHUNK=STEPS * block, BLOCK=block,
    )
    pick = best.argmax(1, keepdim=True)  # the first slice holding the row's best score: the lowest id on ties
    return token.gather(1, pick)[:, 0].long()


if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]  # untyped in triton
    def _gumbel_kernel(  # type: ignore[no-untyped-def]  # Triton reads annotations as types
        Logits, stride, vocab, Seed, temperature, Best, Token,
        CHUNK: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row, part = tl.program_id(0), tl.program_id(1)
        parts = tl.num_programs(1)
        seed = tl.load(Seed)
        lanes = tl.arange(0, BLOCK)
        best = tl.full([BLOCK], float("-inf"), tl.float32)
        token = tl.full([BLOCK], 0, tl.int32)
        row_start = row.to(tl.int64) * vocab  # the noise's position: unique per (row, token) within a step
        for block in range(part * CHUNK, part * CHUNK + CHUNK, BLOCK):
            at = block + lanes
            inside = at < vocab
            logit = tl.load(Logits + row.to(tl.int64) * stride + at, mask=inside, other=float("-inf"))
            uniform = tl.rand(seed, row_start + at)  # [0, 1): 0 gives -inf noise, never drawn
            score = logit.to(tl.float32) / temperature - tl.log(-tl.log(uniform))
            score = tl.where(inside, score, float("-inf"))
            better = score > best  # strictly: each lane keeps its earliest best
            best = tl.where(better, score, best)
            token = tl.where(better, at, token)
        top = tl.max(best, 0)
        first = tl.min(tl.where(best == top, token, vocab), 0)  # the lowest id among the lanes that reach it
        tl.store(Best + row * parts + part, top)
        tl.store(Token + row * parts + part, tl.minimum(first, vocab - 1))
