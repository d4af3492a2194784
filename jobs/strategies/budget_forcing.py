"""Budget forcing (s1): a capped thinking phase, "Wait" instead of an early stop, then a forced answer.

Per question, greedy:
1. think: generate until EOS or until the thinking tokens reach `max_think_tokens`;
2. when the model stopped with EOS and fewer than `waits` waits were used, the EOS is
   dropped, the `wait` string's tokens are appended (they count as thinking tokens,
   within the cap) and thinking continues;
3. the template's `answer_prefix` ("\\nFinal answer: ####") is appended and at most
   `max_answer_tokens` more are generated.

With a reasoning model that closes its thinking with its own delimiter (Qwen3's `</think>`, one
token, thinking not switched off), s1's recipe is followed on that delimiter: an early
`</think>` (or EOS) is replaced by the wait string, and at the end `</think>` plus the
answer prefix are appended. Other models get the prompt-based form above.

Each continuation hands `generate` the cache of the previous one (past_key_values), so
only the appended tokens are prefilled, never the whole prefix again. Questions run one
at a time: rows of a batch would need waits at different positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from jobs.data.prompts import build_messages
from jobs.data.question import Question
from jobs.generation.rows import encode_prompt, eos_token_ids, generation_config
from jobs.models.loading import LoadedModel
from jobs.scoring.answers import extract_answer
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.scoring.thinking import CLOSE
from jobs.specs import BudgetForcingParams, EvalJobSpec
from jobs.strategies.common import judged, templates

TEMPLATE = "budget_forcing"


@dataclass
class Forced:
    """The token ids of one budget-forced answer, phase by phase."""

    prompt: list[int]
    thinking: list[int] = field(default_factory=list)  # generated thinking ids, wait ids included, no EOS
    waits_used: int = 0
    wait_positions: list[int] = field(default_factory=list)  # index in `thinking` where each wait starts
    answer_prefix: list[int] = field(default_factory=list)
    answer: list[int] = field(default_factory=list)  # generated after the prefix, EOS included if emitted
    think_capped: bool = False  # thinking ended at max_think_tokens rather than by the model


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    params = spec.strategy.parsed()
    assert isinstance(params, BudgetForcingParams)
    template = templates(spec)[TEMPLATE]
    records = []
    for done, question in enumerate(questions, 1):
        prompt = encode_prompt(loaded.tokenizer, build_messages(question, TEMPLATE, templates(spec)))
        torch.manual_seed(spec.seed)
        started = time.perf_counter()
        forced = force(loaded, prompt, params, template.get("answer_prefix", "\nFinal answer: ####"))
        records.append(_record(loaded, question, forced, time.perf_counter() - started))
        if progress is not None:
            progress(done, len(questions))
    return records


def think_delimiter(loaded: LoadedModel) -> int | None:
    """The token id of the model's own end-of-thinking delimiter, when budget forcing should use it: the
    tokenizer has `</think>` as one token and the model's thinking is not switched off."""
    if (loaded.info.get("thinking") or {}).get("mode") == "off":
        return None
    ids = _tokens(loaded, CLOSE)
    return ids[0] if len(ids) == 1 else None


def force(loaded: LoadedModel, prompt: list[int], params: BudgetForcingParams, answer_prefix: str) -> Forced:
    """Budget-force one prompt (token ids); see the module doc."""
    delimiter = think_delimiter(loaded)
    eos = eos_token_ids(loaded) | ({delimiter} if delimiter is not None else set())
    wait_ids = _tokens(loaded, params.wait)
    forced, cache = Forced(prompt=list(prompt)), None
    while True:
        budget = params.max_think_tokens - len(forced.thinking)
        new, cache = _continue(loaded, forced.prompt + forced.thinking, cache, budget, stop=eos)
        stopped = bool(new) and new[-1] in eos
        forced.thinking += new[:-1] if stopped else new
        if not stopped:
            forced.think_capped = True
            break
        room = params.max_think_tokens - len(forced.thinking)
        if forced.waits_used >= params.waits or room <= 0:
            break
        forced.wait_positions.append(len(forced.thinking))
        forced.thinking += wait_ids[:room]
        forced.waits_used += 1
        if len(forced.thinking) >= params.max_think_tokens:
            forced.think_capped = True
            break
    forced.answer_prefix = ([delimiter] if delimiter is not None else []) + _tokens(loaded, answer_prefix)
    context = forced.prompt + forced.thinking + forced.answer_prefix
    forced.answer, _ = _continue(loaded, context, cache, params.max_answer_tokens, stop=eos_token_ids(loaded))
    return forced


def _tokens(loaded: LoadedModel, text: str) -> list[int]:
    ids: list[int] = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _continue(
    loaded: LoadedModel, ids: list[int], cache: Any, max_new_tokens: int, *,
    stop: frozenset[int] | set[int] | None = None,
) -> tuple[list[int], Any]:
    """Greedy continuation of `ids` until a `stop` id (default: EOS), reusing `cache` (which holds a prefix of
    `ids`); (new ids, cache)."""
    config = generation_config(loaded, max_new_tokens=max_new_tokens, return_dict_in_generate=True)
    config.eos_token_id = sorted(stop if stop is not None else eos_token_ids(loaded))
    input_ids = torch.tensor([ids], device=loaded.device)
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            past_key_values=cache,
        )
    new: list[int] = output.sequences[0, len(ids) :].tolist()
    return new, output.past_key_values


def _record(loaded: LoadedModel, question: Question, forced: Forced, latency: float) -> PredictionRecord:
    decode = loaded.tokenizer.decode
    # The prefix keeps a `</think>` delimiter (not a special token to Qwen3, so kept anyway): the raw output then
    # splits as any thinking output does (jobs.scoring.thinking).
    thinking, prefix = decode(forced.thinking, skip_special_tokens=True), decode(forced.answer_prefix)
    answer = decode(forced.answer, skip_special_tokens=True)
    extracted = extract_answer(prefix + answer)
    eos = eos_token_ids(loaded)
    answer_truncated = not (forced.answer and forced.answer[-1] in eos)
    generated = forced.thinking + forced.answer
    return judged(
        question,
        raw_output=thinking + prefix + answer,
        extracted=extracted,
        output_tokens=len(generated),
        latency_s=latency,
        truncated=forced.think_capped,
        details={
            "strategy": "budget_forcing",
            "thinking_tokens": len(forced.thinking),
            "answer_tokens": len(forced.answer),
            "waits_used": forced.waits_used,
            "think_capped": forced.think_capped,
            "answer_truncated": answer_truncated,
            "thinking": thinking,
            "answer": answer,
            "truncated_samples": int(forced.think_capped),
            "loop_samples": int(has_repetition_loop(generated)),
        },
    )
