"""Structured self-consistency: the `structured` prompt (Facts → Relationships → Calculations → Answer), then voting."""

from __future__ import annotations

from collections.abc import Callable

from jobs.datasets import Question
from jobs.model_loading import LoadedModel
from jobs.results import PredictionRecord
from jobs.specs import EvalJobSpec
from jobs.strategies.self_consistency import run_with_template


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    return run_with_template(loaded, questions, spec, progress, template="structured")
