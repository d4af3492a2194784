"""Continuous batching through transformers' `generate_batch` (paged KV cache, rows refilled as others finish).

An alternative engine to `jobs.generation.engine.generate_samples`: a finished row's slot is
given to the next waiting request at once, so rows that stop early stop costing, and
the n samples of a prompt are n requests. transformers sizes the paged
cache from free memory itself, so there is no batch size to back off. Rows are
scheduled by a background thread: greedy output is exact, sampled output depends on
that scheduling, so a seeded job is reproducible only with the batched engine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
)
from jobs.models.loading import LoadedModel


def generate_samples_continuous(
    loaded: LoadedModel,
    conversations: list[Conversation],
    *,
    max_new_tokens: int,
    seed: int,
    sampling: Sampling = GREEDY,
    stop_strings: Sequence[str] | None = None,
    **extra: Any,
) -> list[list[Generation]]:
    """`sampling.n` Generations per conversation, in input order (see the module doc)."""
    prompts = [encode_prompt(loaded.tokenizer, c) for c in conversations]
    # Each sample is its own request: forking children (num_return_sequences) is missing
    # from some transformers releases (5.17 returned only the parents).
    single = Sampling(n=1, temperature=sampling.temperature, top_p=sampling.top_p)
    config = generation_config(loaded, max_new_tokens=max_new_tokens, stop_strings=stop_strings, sampling=single, **extra)
    ends = RowEnds(eos=eos_token_ids(loaded), pad=loaded.tokenizer.pad_token_id)
    torch.manual_seed(seed)
    started = time.perf_counter()
    # No inference_mode here: the manager's thread updates its cache tensors outside it.
    requests = [ids for ids in prompts for _ in range(sampling.n)]
    outputs = loaded.model.generate_batch(inputs=requests, generation_config=config)
    latency = time.perf_counter() - started
    failed = [o.error for o in outputs.values() if o.error is not None]
    if failed:
        raise RuntimeError(f"continuous batching failed: {failed[0]}")
    # Results come back in request order.
    rows = [list(o.generated_tokens) for o in outputs.values()]
    if len(rows) != len(prompts) * sampling.n:
        raise RuntimeError(f"continuous batching returned {len(rows)} rows for {len(prompts) * sampling.n} requests")
    return [
        [finish_row(loaded, ids, ends, config, latency) for ids in rows[i * sampling.n : (i + 1) * sampling.n]]
        for i in range(len(prompts))
    ]
