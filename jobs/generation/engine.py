"""Generation: chat prompts in, decoded continuations with token counts out.

`generate_samples` runs the refill engine (jobs.generation.refill, the eval default) or
the batched engine (jobs.generation.batched: transformers' `generate` over fixed batches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from jobs.generation.batched import generate_samples_batched
from jobs.generation.refill import generate_samples_refill
from jobs.generation.rows import GREEDY, Conversation, Generation, Sampling
from jobs.models.loading import LoadedModel


def generate_batch(
    loaded: LoadedModel,
    conversations: list[Conversation],
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    stop_strings: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: str | None = None,
    sampling: Sampling = GREEDY,
) -> list[Generation]:
    """One greedy Generation per conversation, in input order; `progress(done, total)` after each batch.
    `sampling` may add a repetition penalty; its temperature must stay 0 (one row per conversation)."""
    if not sampling.greedy or sampling.n != 1:
        raise ValueError("generate_batch decodes greedily: use generate_samples to sample")
    samples = generate_samples(
        loaded, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
        sampling=sampling, stop_strings=stop_strings, progress=progress, engine=engine,
    )
    return [rows[0] for rows in samples]


def generate_samples(
    loaded: LoadedModel,
    conversations: list[Conversation],
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    sampling: Sampling = GREEDY,
    stop_strings: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    pad_to_multiple_of: int | None = None,
    processors: Callable[[int], Any] | None = None,
    engine: str | None = None,
    **extra: Any,
) -> list[list[Generation]]:
    """`sampling.n` Generations per conversation, in input order.

    `batch_size` counts generated rows, so a batch holds batch_size // n prompts (at
    least one). Prompts are batched longest first, so rows of a batch need little
    padding and an out-of-memory error shows on the first batch rather than the last.
    Each batch is seeded from `seed` and its first prompt's position in that order, so
    the same job gives the same samples again. `pad_to_multiple_of` rounds each batch's
    prompt length up, so that a static, compiled cache sees few distinct shapes.
    On CUDA the static cache is the default (decode steps ~7x faster on an H100, at
    a one-off compile per shape); pass cache_implementation=None to turn it off.
    `processors(prompt_length)` builds logits processors for each generate call
    (the benchmark forces EOS at known steps with it).
    `engine="refill"` runs jobs.generation.refill instead, `batch_size` rows refilled as they end
    (EOS and max_new_tokens only: no stop strings, processors or other options).
    """
    if engine == "refill":
        if stop_strings or processors is not None or extra:
            raise ValueError("engine refill stops at EOS and max_new_tokens only; stop strings, logits processors "
                             f"and generation options {sorted(extra)} need the batched engine")
        return generate_samples_refill(
            loaded, conversations, max_new_tokens=max_new_tokens, slots=batch_size, seed=seed, sampling=sampling,
            progress=progress,
        )
    return generate_samples_batched(
        loaded, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, sampling=sampling,
        stop_strings=stop_strings, progress=progress, pad_to_multiple_of=pad_to_multiple_of, processors=processors,
        **extra,
    )
