"""Greedy decoding: one answer per question at temperature 0."""

from __future__ import annotations

from collections.abc import Callable

from jobs.data.question import Question
from jobs.generation.engine import generate_batch
from jobs.generation.rows import Generation
from jobs.models.loading import LoadedModel
from jobs.scoring.answers import extract
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.specs import EvalJobSpec
from jobs.strategies.common import asked, extraction_flags, greedy_sampling, judged, preset_or, thinking


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    """Prediction records for `questions`, `spec.batch_size` rows generated at once."""
    generations = generate_batch(
        loaded,
        asked(spec, questions, preset_or(spec, "zero_shot")),
        max_new_tokens=spec.max_new_tokens,
        sampling=greedy_sampling(spec),
        batch_size=spec.batch_size,
        seed=spec.seed,
        progress=progress,
        engine=spec.engine,
    )
    return [score(q, g) for q, g in zip(questions, generations, strict=True)]


def score(question: Question, generation: Generation) -> PredictionRecord:
    """A generation judged against its question's reference answer."""
    found = extract(generation.text)
    return judged(
        question,
        raw_output=generation.text,
        extracted=found.answer,
        output_tokens=generation.output_tokens,
        latency_s=generation.latency_s,
        truncated=generation.truncated,
        details={
            "strategy": "greedy", "loop": has_repetition_loop(generation.token_ids),
            **extraction_flags(found), **thinking(generation),
        },
    )
