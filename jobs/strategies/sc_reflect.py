"""Self-consistency, then reflection only where the samples disagree.

A question whose winning answer's share (agreement) is below `agreement_threshold`
gets one review turn on the first sample that voted for the winner; the revised answer
replaces the vote's when it has a number. fixed/broke compare against the vote.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from jobs.data.question import Question
from jobs.models.loading import LoadedModel
from jobs.scoring.answers import answers_match
from jobs.scoring.records import PredictionRecord
from jobs.specs import EvalJobSpec, ScReflectParams
from jobs.strategies.common import asked, preset_or
from jobs.strategies.reflection import TEMPLATE, review, revision_details
from jobs.strategies.self_consistency import run_with_template


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    params = spec.strategy.parsed()
    assert isinstance(params, ScReflectParams)
    template = preset_or(spec, TEMPLATE)
    voted = run_with_template(loaded, questions, spec, progress, template=template)
    doubtful = [i for i, r in enumerate(voted) if r.details["agreement"] < params.agreement_threshold]
    conversations = asked(spec, [questions[i] for i in doubtful], template)
    revised = review(loaded, conversations, [voted[i].raw_output for i in doubtful], spec)
    records = [replace(r, details={**r.details, "strategy": "sc_reflect", "reflected": False}) for r in voted]
    for i, generation in zip(doubtful, revised, strict=True):
        final, details = revision_details(questions[i], voted[i].extracted_answer, generation)
        tokens, latency = generation.output_tokens, generation.latency_s
        records[i] = _reflected(records[i], questions[i], final, tokens, latency, details)
    return records


def _reflected(
    record: PredictionRecord,
    question: Question,
    final: str | None,
    tokens: int,
    latency: float,
    details: dict[str, Any],
) -> PredictionRecord:
    return replace(
        record,
        raw_output=details["revised_output"],
        extracted_answer=final,
        correct=answers_match(final, question.answer),
        output_tokens=record.output_tokens + tokens,
        latency_s=record.latency_s + latency,
        details={
            **record.details,
            "reflected": True,
            **details,
            "truncated_samples": record.details["truncated_samples"] + details["revised_truncated"],
        },
    )
