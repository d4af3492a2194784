"""Memorisation audit: does an adapter reproduce the examples it was trained on?

Two figures on the train job's own examples: teacher-forced NLL of the assistant turn
(how well it has memorised the text) and greedy pass@1 with the eval prompt (whether it
gets the answer when it must generate on its own). A low NLL with a low pass@1 is
exposure bias: the model follows its traces when fed them, but not from its own tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import torch
import torch.nn.functional as F

from jobs.data.prompts import build_messages
from jobs.data.shipped import Shipped
from jobs.generation.engine import generate_batch
from jobs.models.loading import LoadedModel, load_model
from jobs.scoring.answers import answers_match, extract_answer
from jobs.scoring.stats import wilson_interval
from jobs.specs import AuditJobSpec
from jobs.training.data import IGNORE_INDEX, TrainExample, load_examples, tokenize


class AuditRow(TypedDict):
    id: str
    nll: float  # per assistant token
    tokens: int
    extracted: str | None
    correct: bool


@dataclass(frozen=True)
class AuditOutcome:
    n: int
    mean_nll: float  # per assistant token, over all examples
    correct: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    per_example: list[AuditRow]
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(
    spec: AuditJobSpec,
    *,
    adapter_path: str,
    progress: Callable[[int, int], None] | None = None,
    shipped: Shipped | None = None,
) -> AuditOutcome:
    started = time.perf_counter()
    params = spec.train.params
    examples = load_examples(spec.train, params, shipped=shipped)  # the same seeded selection the train job used
    loaded = load_model(spec.train.model, adapter_path=adapter_path)
    nlls = [example_nll(loaded, e, max_length=params.max_length) for e in examples]
    generations = generate_batch(
        loaded, [build_messages(e.question) for e in examples], max_new_tokens=spec.max_new_tokens,
        batch_size=spec.batch_size, seed=spec.train.seed, progress=progress,
    )
    rows: list[AuditRow] = []
    for example, (nll, tokens), generation in zip(examples, nlls, generations, strict=True):
        extracted = extract_answer(generation.text)
        rows.append(
            AuditRow(
                id=example.id,
                nll=nll / max(tokens, 1),
                tokens=tokens,
                extracted=extracted,
                correct=answers_match(extracted, example.answer),
            )
        )
    correct = sum(r["correct"] for r in rows)
    low, high = wilson_interval(correct, len(rows))
    return AuditOutcome(
        n=len(rows), mean_nll=sum(n for n, _ in nlls) / max(sum(t for _, t in nlls), 1), correct=correct,
        pass_at_1=correct / len(rows), ci_low=low, ci_high=high, per_example=rows, wall_s=time.perf_counter() - started,
    )


@torch.no_grad()
def example_nll(loaded: LoadedModel, example: TrainExample, *, max_length: int) -> tuple[float, int]:
    """(summed NLL, token count) of the assistant turn, teacher-forced, as the train job's loss sees it."""
    item = tokenize(example, loaded.tokenizer, max_length=max_length)
    ids = torch.tensor([item.input_ids], device=loaded.device)
    labels = torch.tensor([item.labels], device=loaded.device)
    logits = loaded.model(input_ids=ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return float(loss), int((targets != IGNORE_INDEX).sum())
