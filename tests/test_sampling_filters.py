"""Sampling filters (jobs.generation.filters): the refill engine's filtered distribution equals what transformers'
own logits processors leave on the same logits, and both engines honour top_k / min_p / repetition_penalty
(greedy rows stay token-for-token equal, seeded samples reproducible)."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from jobs.data.synthetic import generate
from jobs.generation.engine import generate_samples
from jobs.generation.filters import filter_logits, gumbel_draw, penalise_repeats
from jobs.generation.refill import generate_samples_refill
from jobs.generation.rows import Sampling, generation_config
from jobs.models.loading import load_model
from jobs.specs import ModelSpec, StrategySpec
from jobs.strategies.common import sampling as sampling_of

SETTINGS = [
    Sampling(n=1, temperature=0.7),
    Sampling(n=1, temperature=0.7, top_k=50),
    Sampling(n=1, temperature=1.0, top_k=5, top_p=0.9),
    Sampling(n=1, temperature=0.8, top_p=0.5),
    Sampling(n=1, temperature=1.3, min_p=0.05),
    Sampling(n=1, temperature=0.6, top_k=40, top_p=0.95, min_p=0.1),
    Sampling(n=1, temperature=0.7, top_k=1),
]


def transformers_processors(sampling: Sampling) -> LogitsProcessorList:
    """The list transformers' generate builds for these settings (generation/utils.py, in its order)."""
    processors = LogitsProcessorList()
    if sampling.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
    if sampling.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k:
        processors.append(TopKLogitsWarper(top_k=sampling.top_k))
    if sampling.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=sampling.top_p))
    if sampling.min_p is not None:
        processors.append(MinPLogitsWarper(min_p=sampling.min_p))
    return processors


def logits_batch(seed: int, rows: int = 6, vocab: int = 1000) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Peaked and flat rows alike: a scale per row, so top_p and min_p cut at very different ranks.
    return torch.randn(rows, vocab, generator=generator) * torch.linspace(0.5, 6.0, rows)[:, None]


@pytest.mark.parametrize("sampling", SETTINGS, ids=repr)
def test_filtered_logits_equal_transformers_warpers(sampling: Sampling) -> None:
    for seed in range(5):
        logits = logits_batch(seed)
        expected = transformers_processors(sampling)(torch.zeros((6, 1), dtype=torch.long), logits.clone())
        ours = filter_logits(logits.clone(), sampling)
        # Same tokens kept, same values where kept: the same distribution to draw from.
        assert torch.equal(torch.isinf(ours), torch.isinf(expected))
        assert torch.equal(ours, expected)


def test_repetition_penalty_equals_transformers_processor() -> None:
    logits = logits_batch(7, rows=3, vocab=50)
    input_ids = torch.tensor([[1, 2, 2, 30, 49], [0, 0, 0, 0, 0], [5, 6, 7, 8, 9]])
    seen = torch.zeros(3, 50, dtype=torch.bool)
    seen.scatter_(1, input_ids, True)
    for penalty in (1.3, 0.8):
        expected = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, logits.clone())
        ours = penalise_repeats(logits.clone(), seen, penalty)
        assert torch.equal(ours, expected)
    changed = penalise_repeats(logits, seen, 1.3) != logits
    assert torch.equal(changed, seen)  # every seen token's logit moved, no other


def test_gumbel_draws_follow_the_filtered_distribution() -> None:
    """The refill engine's Gumbel-max draw (filters.gumbel_draw) samples the filtered softmax: empirical frequencies
    agree with it."""
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0]])
    sampling = Sampling(n=1, temperature=0.9, top_k=4, top_p=0.9)
    filtered = filter_logits(logits, sampling)
    probs = filtered.softmax(-1)[0]
    generator = torch.Generator().manual_seed(0)
    draws = 40_000
    picks = gumbel_draw(logits.expand(draws, 8), sampling, generator)
    counts = torch.bincount(picks, minlength=8).double() / draws
    assert counts[probs == 0].sum() == 0  # never a filtered token
    assert torch.allclose(counts, probs.double(), atol=0.01)


def test_strategy_params_reach_the_sampling_settings() -> None:
    spec = StrategySpec.model_validate(
        {"self_consistency": {"n": 3, "top_k": 50, "min_p": 0.05, "repetition_penalty": 1.1}}
    )
    assert sampling_of(spec.parsed()) == Sampling(  # type: ignore[arg-type]
        n=3, temperature=0.7, top_p=1.0, top_k=50, min_p=0.05, repetition_penalty=1.1
    )
    # Defaults leave the stored params (and so the spec hash) as they were before these fields existed.
    assert StrategySpec.model_validate({"self_consistency": {}}).params == {"n": 5, "temperature": 0.7, "top_p": 1.0}
    assert StrategySpec.model_validate("greedy").params == {}


@pytest.fixture(scope="module")
def loaded(tiny_model):  # type: ignore[no-untyped-def]
    return load_model(ModelSpec(id=str(tiny_model.path)), device="cpu")


def conversations(count: int, seed: int = 3) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": q.question}] for q in generate(count, complexity=(1, 3), seed=seed)]


def test_batched_config_states_every_filter(loaded) -> None:  # type: ignore[no-untyped-def]
    """None would let the model's generation_config.json or transformers' defaults (top_k 50) fill them in."""
    config = generation_config(loaded, max_new_tokens=8, sampling=Sampling(n=2, temperature=0.7))
    assert (config.top_k, config.min_p, config.repetition_penalty) == (0, 0.0, 1.0)
    config = generation_config(loaded, max_new_tokens=8, sampling=Sampling(n=2, temperature=0.7, top_k=50))
    assert config.top_k == 50


def test_greedy_with_repetition_penalty_is_the_same_in_both_engines(loaded) -> None:  # type: ignore[no-untyped-def]
    convs = conversations(5)
    penalised = Sampling(repetition_penalty=1.5)
    batched = generate_samples(loaded, convs, max_new_tokens=16, batch_size=8, seed=0, sampling=penalised)
    refilled = generate_samples_refill(loaded, convs, max_new_tokens=16, slots=2, seed=0, sampling=penalised)
    plain = generate_samples_refill(loaded, convs, max_new_tokens=16, slots=2, seed=0)
    ids = [[g.token_ids for g in rows] for rows in refilled]
    assert ids == [[g.token_ids for g in rows] for rows in batched]
    assert ids != [[g.token_ids for g in rows] for rows in plain]  # the penalty changed something


def test_filtered_sampling_is_reproducible_and_respects_top_k(loaded) -> None:  # type: ignore[no-untyped-def]
    convs = conversations(4, seed=5)
    narrow = Sampling(n=3, temperature=1.5, top_k=1)  # top_k 1 at any temperature is greedy
    assert [[g.token_ids for g in rows] for rows in generate_samples_refill(
        loaded, convs, max_new_tokens=10, slots=6, seed=3, sampling=narrow
    )] == [[g.token_ids] * 3 for [g] in generate_samples_refill(loaded, convs, max_new_tokens=10, slots=6, seed=3)]

    wide = Sampling(n=3, temperature=1.0, top_k=20, min_p=0.01, repetition_penalty=1.2)
    first = generate_samples_refill(loaded, convs, max_new_tokens=10, slots=6, seed=9, sampling=wide)
    again = generate_samples_refill(loaded, convs, max_new_tokens=10, slots=6, seed=9, sampling=wide)
    assert [[g.token_ids for g in r] for r in first] == [[g.token_ids for g in r] for r in again]
    batched = generate_samples(loaded, convs, max_new_tokens=10, batch_size=6, seed=9, sampling=wide)
    batched_again = generate_samples(loaded, convs, max_new_tokens=10, batch_size=6, seed=9, sampling=wide)
    assert [[g.token_ids for g in r] for r in batched] == [[g.token_ids for g in r] for r in batched_again]
    assert all(len(rows) == 3 for rows in batched)
