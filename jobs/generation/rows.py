"""What both generation engines share: chat prompts as token ids, decoding settings, and finished rows.

A Generation is one decoded continuation with its token count; `finish_row` turns a
generated id row (padding included) into one, `generation_config` holds the decoding
choices (greedy, or sampling with temperature / top_p and n samples per prompt).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.models.loading import LoadedModel
from jobs.scoring.thinking import thinking_count

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
    thinking_tokens: int | None = None  # of output_tokens, those of a thinking block (jobs.scoring.thinking)


@dataclass(frozen=True)
class RowEnds:
    eos: frozenset[int]
    pad: int


def encode_prompt(tokenizer: Any, conversation: Conversation) -> list[int]:
    """Token ids of a conversation in the model's chat format, ready for the assistant's turn."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    # The chat template already wrote any BOS; adding special tokens again would double it.
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def eos_token_ids(loaded: LoadedModel) -> frozenset[int]:
    """Every id that ends a row: the generation config's EOS ids (chat models often have several)
    and the tokenizer's."""
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
    """How rows are drawn: greedy at temperature 0, else `n` samples per prompt, from the distribution
    jobs.generation.filters leaves (top_k None: no top-k, min_p None: no min-p, repetition_penalty 1: none;
    the penalty applies to greedy rows too, as in transformers)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


GREEDY = Sampling()


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

    # Every filter is given explicitly: a None would be filled from the model's generation_config.json
    # (Qwen2.5-Instruct's sets top_k 20 and repetition_penalty 1.05) or transformers' defaults (top_k 50).
    drawn: dict[str, Any] = {"do_sample": False} if sampling.greedy else {
        "do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
        "top_k": sampling.top_k or 0, "min_p": sampling.min_p if sampling.min_p is not None else 0.0,
    }
    drawn["repetition_penalty"] = sampling.repetition_penalty
    return GenerationConfig(  # type: ignore[no-untyped-call]  # untyped in transformers
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


def finish_row(loaded: LoadedModel, ids: list[int], ends: RowEnds, config: Any, latency: float) -> Generation:
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
    stopped = cut_at_stop(text, config.stop_strings)
    truncated = not ended and stopped is None and count >= config.max_new_tokens
    return Generation(
        text=text if stopped is None else stopped,
        output_tokens=count,
        truncated=truncated,
        latency_s=latency,
        token_ids=tuple(ids[:count]),
        thinking_tokens=thinking_count(ids[:count], loaded.think_ids),
    )


def cut_at_stop(text: str, stop_strings: list[str] | None) -> str | None:
    """The text up to and including its first stop string, or None when it has none."""
    hits = [(text.find(s), s) for s in stop_strings or [] if s in text]
    if not hits:
        return None
    position, stop = min(hits)
    return text[: position + len(stop)]


def cache_argument(model: Any) -> str:
    """The keyword the model's forward takes its KV cache under: `cache` in recent transformers (where the old
    name warns and goes at 5.40), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
