"""The batched engine: transformers' `generate` over fixed batches of prompts.

Batches are formed longest prompt first and run through `jobs.resources.backoff.run_batches`,
which halves the batch on CUDA out-of-memory. `num_return_sequences` copies each prompt n
times before the prefill; rows that end early ride along until their batch's last row ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from jobs.generation.rows import (
    GREEDY,
    Conversation,
    Generation,
    RowEnds,
    Sampling,
    encode_prompt,
    eos_token_ids,
    finish_row,
    generation_config,
    longest_first,
)
from jobs.models.loading import LoadedModel
from jobs.resources.backoff import run_batches

# Prompt lengths are rounded up to this on CUDA, so the compiled static cache sees few shapes.
STATIC_PAD = 64


def generate_samples_batched(
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
    **extra: Any,
) -> list[list[Generation]]:
    """`sampling.n` Generations per conversation, in input order (see `jobs.generation.engine.generate_samples`)."""
    if loaded.device.startswith("cuda"):
        extra.setdefault("cache_implementation", "static")
        pad_to_multiple_of = pad_to_multiple_of or STATIC_PAD
    if extra.get("cache_implementation") is None:
        extra.pop("cache_implementation", None)
    prompts = [encode_prompt(loaded.tokenizer, c) for c in conversations]
    order = longest_first([len(p) for p in prompts])
    config = generation_config(
        loaded, max_new_tokens=max_new_tokens, stop_strings=stop_strings, sampling=sampling, **extra
    )
    ends = RowEnds(eos=eos_token_ids(loaded), pad=loaded.tokenizer.pad_token_id)
    results: list[list[Generation]] = [[] for _ in prompts]

    def run(start: int, rows: list[int]) -> None:
        outputs, latency = _generate_rows(
            loaded, [prompts[i] for i in rows], config, seed + start, pad_to_multiple_of, processors
        )
        for k, index in enumerate(rows):
            chunk = outputs[k * sampling.n : (k + 1) * sampling.n]
            results[index] = [finish_row(loaded, ids, ends, config, latency) for ids in chunk]

    run_batches(order, max(1, batch_size // sampling.n), run, progress=progress)
    return results




def _generate_rows(
    loaded: LoadedModel,
    prompts: list[list[int]],
    config: Any,
    seed: int,
    pad_to_multiple_of: int | None = None,
    processors: Callable[[int], Any] | None = None,
) -> tuple[list[list[int]], float]:
    """Generated ids of each prompt (padding included; n rows per prompt, prompt-major) and the batch's wall time."""
    batch = loaded.tokenizer.pad(
        {"input_ids": prompts}, padding=True, pad_to_multiple_of=pad_to_multiple_of, return_tensors="pt"
    ).to(loaded.device)
    extra: dict[str, Any] = {"tokenizer": loaded.tokenizer} if config.stop_strings else {}
    if processors is not None:
        extra["logits_processor"] = processors(batch["input_ids"].shape[1])
    # Seeded per batch: sampling draws from the global generator, so this makes a job reproducible.
    torch.manual_seed(seed)
    started = time.perf_counter()
    with torch.inference_mode():
        output = loaded.model.generate(**batch, generation_config=config, **extra)
    elapsed = time.perf_counter() - started
    rows: list[list[int]] = output[:, batch["input_ids"].shape[1] :].tolist()
    return rows, elapsed


