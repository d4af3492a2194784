"""Causal-LM cross-entropy that never materialises the full logits.

With a 152k-token vocabulary the logits of 8 × 512 tokens are 4,096 × 151,936 floats
(2.3 GiB in fp32, more with their gradient): they, not the weights, decide whether
a 0.5B model trains on a 4 GB card. Here only the labelled positions are projected,
a chunk of tokens at a time, and each chunk is recomputed in the backward pass
(checkpointing) instead of being kept, so at most one chunk's logits exist at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
# One chunk's fp32 logits stay within this: with Qwen's 152k vocabulary a 1,024-token chunk's logits, their
# softmax and gradient took 1.3 GiB more peak memory than 256-token chunks, and ran 10% slower (H100, 0.5B shape,
# bench/results/2026-11-24-session5/train-small-shapes.log). The chunk changes only the order of a sum.
LOGITS_BUDGET_BYTES = 160 * 2**20


def chunk_tokens(asked: int, vocab: int) -> int:
    """Tokens per chunk: `asked`, capped so that a chunk's fp32 logits fit LOGITS_BUDGET_BYTES (at least 64)."""
    return max(1, min(asked, max(64, LOGITS_BUDGET_BYTES // (4 * vocab))))


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # fp32 log-softmax: bf16 loses the small probabilities.
    logits = (hidden @ weight.t()).to(torch.promote_types(hidden.dtype, torch.float32))
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_lm_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, chunk: int = 1024
) -> tuple[torch.Tensor, int]:
    """(sum of token losses, number of labelled tokens) for next-token prediction.

    `hidden` [B, T, H] are the decoder's final hidden states, `weight` [V, H] the output
    projection, `labels` [B, T] the input ids with IGNORE_INDEX where no loss is taken.
    Position t predicts label t+1, as in transformers' causal-LM loss.
    """
    targets = labels[:, 1:].reshape(-1)
    keep = targets != IGNORE_INDEX
    selected = hidden[:, :-1].reshape(-1, hidden.shape[-1])[keep]
    targets = targets[keep]
    return _chunked_sum(selected, weight, targets, chunk=chunk), int(targets.numel())


def all_positions_lm_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *, chunk: int = 1024
) -> torch.Tensor:
    """The sum of token losses `chunked_lm_loss` returns, projected at every position (IGNORE_INDEX ones add 0).

    No shape depends on the labels, as a CUDA graph needs (jobs.training.micro_step); the price is the output
    projection of the unlabelled positions too.
    """
    states = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    return _chunked_sum(states, weight, labels[:, 1:].reshape(-1), chunk=chunk)


def _chunked_sum(states: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk: int) -> torch.Tensor:
    """Sum of the token losses of `states` [N, H] against `targets` [N], a checkpointed chunk at a time."""
    total = states.new_zeros((), dtype=torch.promote_types(states.dtype, torch.float32))
    chunk = chunk_tokens(chunk, weight.shape[0])
    for start in range(0, targets.numel(), chunk):
        piece = slice(start, start + chunk)
        total = total + checkpoint(_chunk_loss, states[piece], weight, targets[piece], use_reentrant=False)
    return total
