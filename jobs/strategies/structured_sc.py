"""Structured self-consistency: the `structured` prompt (Facts → Relationships → Calculations → Answer), then voting."""

from __future__ import annotations

from collections.abc import Callable

from jobs.data.question import Question
from jobs.models.loading import LoadedModel
from jobs.scoring.records import PredictionRecord
from jobs.specs import EvalJobSpec
from jobs.strategies.self_consistency import run_with_template


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    return run_with_template(loaded, questions, spec, progress, template="structured")
