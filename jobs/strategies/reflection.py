"""Reflection: the model answers greedily, is shown its own solution and asked to review and revise it.

Both answers are recorded. The final answer is the revised one, or the first answer
when the revision has no number. `fixed` = first wrong and final right, `broke` =
first right and final wrong; the leaderboard sums them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.data.question import Question
from jobs.generation.engine import generate_batch
from jobs.generation.rows import Conversation, Generation
from jobs.models.loading import LoadedModel
from jobs.scoring.answers import answers_match, extract_answer
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.specs import EvalJobSpec
from jobs.strategies.common import asked, greedy_sampling, judged, preset_or, templates

TEMPLATE = "reflection"


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    conversations = asked(spec, questions, preset_or(spec, TEMPLATE))
    first = _greedy(loaded, conversations, spec, progress)
    revised = review(loaded, conversations, [g.text for g in first], spec)
    return [_record(q, a, b) for q, a, b in zip(questions, first, revised, strict=True)]


def review(
    loaded: LoadedModel, conversations: list[Conversation], answers: list[str], spec: EvalJobSpec
) -> list[Generation]:
    """Greedy revisions: each conversation, its answer as the assistant's turn, then the review request."""
    request = templates(spec)[TEMPLATE]["review"]
    shown = [
        [*c, {"role": "assistant", "content": a}, {"role": "user", "content": request}]
        for c, a in zip(conversations, answers, strict=True)
    ]
    return _greedy(loaded, shown, spec, None)


def _greedy(
    loaded: LoadedModel,
    conversations: list[Conversation],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[Generation]:
    return generate_batch(
        loaded, conversations, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size, seed=spec.seed,
        progress=progress, engine=spec.engine, sampling=greedy_sampling(spec),
    )


def revision_details(question: Question, before: str | None, revised: Generation) -> tuple[str | None, dict[str, Any]]:
    """(final answer, bookkeeping) of a revision of an answer `before`."""
    revised_answer = extract_answer(revised.text)
    final = revised_answer if revised_answer is not None else before
    was, now = answers_match(before, question.answer), answers_match(final, question.answer)
    return final, {
        "initial_answer": before,
        "initial_correct": was,
        "revised_output": revised.text,
        "revised_answer": revised_answer,
        "revised_tokens": revised.output_tokens,
        "revised_truncated": revised.truncated,
        "fixed": not was and now,
        "broke": was and not now,
    }


def _record(question: Question, first: Generation, revised: Generation) -> PredictionRecord:
    final, details = revision_details(question, extract_answer(first.text), revised)
    loops = has_repetition_loop(first.token_ids) + has_repetition_loop(revised.token_ids)
    return judged(
        question,
        raw_output=revised.text,
        extracted=final,
        output_tokens=first.output_tokens + revised.output_tokens,
        latency_s=first.latency_s + revised.latency_s,
        truncated=revised.truncated,
        details={
            "strategy": "reflection",
            "initial_output": first.text,
            "initial_tokens": first.output_tokens,
            **details,
            "truncated_samples": first.truncated + revised.truncated,
            "loop_samples": loops,
        },
    )
