"""The filtered next-token distribution: transformers' logits processors, as one function both engines share.

The refill engine applies these to each step's logits before its Gumbel-max draw; the batched
engine hands the same settings to transformers' `generate`, whose processors compute the same
thing. The order and the formulas are transformers' (generation/utils.py `_get_logits_processor`,
generation/logits_process.py): the repetition penalty first (it applies to greedy decoding too),
then, when sampling, temperature, top_k, top_p and min_p, each keeping at least one token.
tests/test_sampling_filters.py checks equality with transformers' processors on the same logits.
"""

from __future__ import annotations

import torch

from jobs.generation.rows import Sampling

FILTERED = float("-inf")


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """RepetitionPenaltyLogitsProcessor: a token already seen by its row (prompt or output, `seen` [rows, vocab]
    bool) has its logit divided by `penalty`, or multiplied when negative."""
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def temperature_only(sampling: Sampling) -> bool:
    """Whether `filter_logits` would apply nothing but the temperature (no top_k, top_p or min_p)."""
    return not sampling.top_k and sampling.top_p == 1.0 and sampling.min_p is None


def gumbel_draw(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from the filtered softmax, by Gumbel-max: argmax of the filtered float32 logits plus
    Gumbel noise (an exact draw). The refill engine's draw wherever its fused kernel does not run."""
    logits = filter_logits(logits.float(), sampling)
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-20, 1.0)
    return (logits - torch.log(-torch.log(uniform))).argmax(-1)


def filter_logits(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Temperature, top_k, top_p and min_p in transformers' order; dropped tokens are -inf."""
    if sampling.temperature != 1.0:
        logits = logits / sampling.temperature
    if sampling.top_k:
        logits = _top_k(logits, sampling.top_k)
    if sampling.top_p < 1.0:
        logits = _top_p(logits, sampling.top_p)
    if sampling.min_p is not None:
        logits = _min_p(logits, sampling.min_p)
    return logits


def _top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = torch.topk(logits, min(k, logits.size(-1)))[0][..., -1, None]
    return logits.masked_fill(logits < kth, FILTERED)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The smallest set of most likely tokens whose probability reaches top_p (always the top one)."""
    ordered, order = torch.sort(logits, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)
    drop[..., -1:] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), FILTERED)


def _min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)
    return logits.masked_fill(drop, FILTERED)
