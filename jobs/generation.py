"""Generation: chat prompts in, decoded continuations with token counts out.

`generate_samples` dispatches to the refill engine (jobs.refill, the eval default) or
runs the batched engine here: transformers' `generate` over fixed batches. Its decoding
choices live in `generation_config` (greedy, or sampling with temperature / top_p and n
samples per prompt through `num_return_sequences`, which copies each prompt n times
before the prefill) and each output row is turned into a Generation by `_finish_row`.
Batches are formed longest prompt first and run through `jobs.backoff.run_batches`,
which halves the batch on CUDA out-of-memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from jobs.model_loading import LoadedModel

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    text: str  # decoded continuation, special tokens dropped
    output_tokens: int  # generated tokens up to and including the first EOS; never padding
    truncated: bool  # ran into max_new_tokens without EOS or a stop string
    # Time to answer, not a cost share: the wall time of the row's batch (batched engine),
    # or from its prompt's prefill to its end (refill engine). Rows run side by side, so
    # summing it over rows counts shared time once per row.
    latency_s: float
    token_ids: tuple[int, ...] = ()  # the output_tokens generated ids


@dataclass(frozen=True)
class _Ends:
    eos: frozenset[int]
    pad: int


def encode_prompt(tokenizer: Any, conversation: Conversation) -> list[int]:
    """Token ids of a conversation in the model's chat format, ready for the assistant's turn."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    # The chat template already wrote any BOS; adding special tokens again would double it.
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def eos_token_ids(loaded: LoadedModel) -> frozenset[int]:
    """Every id that ends a row: the generation config's EOS ids (chat models often have several) and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    if not ids:
        raise ValueError(f"{loaded.label}: neither the model nor the tokenizer defines an EOS token")
    return frozenset(ids)


@dataclass(frozen=True)
class Sampling:
    """How rows are drawn: greedy at temperature 0, else `n` samples per prompt."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


GREEDY = Sampling()
# Prompt lengths are rounded up to this on CUDA, so the compiled static cache sees few shapes.
STATIC_PAD = 64


def generation_config(
    loaded: LoadedModel,
    *,
    max_new_tokens: int,
    stop_strings: Sequence[str] | None = None,
    sampling: Sampling = GREEDY,
    **extra: Any,
) -> Any:
    """The decoding settings: greedy or sampled, stopping at any EOS or stop string.

    `extra` goes to GenerationConfig as is (the benchmark's min_new_tokens,
    cache_implementation="static").
    """
    from transformers import GenerationConfig

    drawn = {"do_sample": False} if sampling.greedy else {
        "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": None,
    }
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        eos_token_id=sorted(eos_token_ids(loaded)),
        pad_token_id=loaded.tokenizer.pad_token_id,
        stop_strings=list(stop_strings) if stop_strings else None,
        num_return_sequences=sampling.n,
        **{**drawn, **extra},
    )


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices of prompts of these lengths, longest first (ties in input order): the order both
    engines take prompts in, so an out-of-memory error shows on the first batch, not the last."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


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
) -> list[Generation]:
    """One greedy Generation per conversation, in input order; `progress(done, total)` after each batch."""
    samples = generate_samples(
        loaded, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
        stop_strings=stop_strings, progress=progress, engine=engine,
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
    `engine="refill"` runs jobs.refill instead, `batch_size` rows refilled as they end
    (EOS and max_new_tokens only: no stop strings, processors or other options).
    """
    if engine == "refill":
        if stop_strings or processors is not None or extra:
            raise ValueError("engine refill stops at EOS and max_new_tokens only; stop strings, logits processors "
                             f"and generation options {sorted(extra)} need the batched engine")
        from jobs.refill import generate_samples_refill

        return generate_samples_refill(
            loaded, conversations, max_new_tokens=max_new_tokens, slots=batch_size, seed=seed, sampling=sampling, progress=progress,
        )
    if loaded.device.startswith("cuda"):
        extra.setdefault("cache_implementation", "static")
        pad_to_multiple_of = pad_to_multiple_of or STATIC_PAD
    if extra.get("cache_implementation") is None:
        extra.pop("cache_implementation", None)
    from jobs.backoff import run_batches

    prompts = [encode_prompt(loaded.tokenizer, c) for c in conversations]
    order = longest_first([len(p) for p in prompts])
    config = generation_config(
        loaded, max_new_tokens=max_new_tokens, stop_strings=stop_strings, sampling=sampling, **extra
    )
    ends = _Ends(eos=eos_token_ids(loaded), pad=loaded.tokenizer.pad_token_id)
    results: list[list[Generation]] = [[] for _ in prompts]

    def run(start: int, rows: list[int]) -> None:
        outputs, latency = _generate_rows(loaded, [prompts[i] for i in rows], config, seed + start, pad_to_multiple_of, processors)
        for k, index in enumerate(rows):
            chunk = outputs[k * sampling.n : (k + 1) * sampling.n]
            results[index] = [_finish_row(loaded, ids, ends, config, latency) for ids in chunk]

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


def _finish_row(loaded: LoadedModel, ids: list[int], ends: _Ends, config: Any, latency: float) -> Generation:
    # A finished row is padded to the batch's length. With pad == EOS the first of them
    # is the EOS; otherwise the first pad marks a row cut by a stop string.
    count, ended = len(ids), False
    for position, token in enumerate(ids):
        if token in ends.eos:
            count, ended = position + 1, True
            break
        if token == ends.pad:
            count, ended = position, True
            break
    text = loaded.tokenizer.decode(ids[:count], skip_special_tokens=True)
    stopped = _cut_at_stop(text, config.stop_strings)
    truncated = not ended and stopped is None and count >= config.max_new_tokens
    return Generation(
        text=text if stopped is None else stopped,
        output_tokens=count,
        truncated=truncated,
        latency_s=latency,
        token_ids=tuple(ids[:count]),
    )


def _cut_at_stop(text: str, stop_strings: list[str] | None) -> str | None:
    """The text up to and including its first stop string, or None when it has none."""
    hits = [(text.find(s), s) for s in stop_strings or [] if s in text]
    if not hits:
        return None
    position, stop = min(hits)
    return text[: position + len(stop)]
