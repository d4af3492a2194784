"""An eval job: questions, model, strategy, scores. Called by workers and the embedded runner alike."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from jobs.data.datasets import load_questions
from jobs.data.question import Question
from jobs.data.shipped import Shipped
from jobs.errors import FatalJobError
from jobs.models.loading import load_model
from jobs.resources.memory import MemoryTracker
from jobs.scoring.records import PredictionRecord
from jobs.scoring.results import EvalOutcome
from jobs.scoring.taxonomy import FailureLabel, classify, text_has_loop
from jobs.specs import EvalJobSpec
from jobs.strategies import get_strategy


def run(
    spec: EvalJobSpec,
    *,
    adapter_path: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    shipped: Shipped | None = None,
) -> EvalOutcome:
    """Evaluate `spec.model` (plus adapter) on `spec.dataset` with `spec.strategy`.

    `adapter_path` is the local directory of the adapter, resolved by the caller when
    the spec names a train job; `progress(done, total)` is called after each batch;
    `shipped` reads a local dataset's shipped copy (workers never open `spec.dataset.path`).
    """
    # Refuse an unwritten strategy before paying for the model load.
    strategy = get_strategy(spec.strategy.name)
    questions = load_questions(spec.dataset, shipped=shipped)
    loaded = load_model(spec.model, adapter_path=adapter_path or _adapter_uri(spec))
    with MemoryTracker(loaded.device) as memory:
        started = time.perf_counter()
        predictions = strategy(loaded, questions, spec, progress)
        wall_s = time.perf_counter() - started
    return EvalOutcome.from_predictions(
        label_failures(predictions, questions),
        wall_s=wall_s,
        peak_memory_mb=memory.peak_mb,
        memory_kind=memory.kind,
        device=loaded.device,
    )


def label_failures(predictions: list[PredictionRecord], questions: list[Question]) -> list[PredictionRecord]:
    """The records with every wrong one labelled by jobs.scoring.taxonomy (with its question's known wrong readings)."""
    by_id = {q.id: q for q in questions}
    return [p if p.correct else replace(p, failure=_failure(p, by_id.get(p.question_id))) for p in predictions]


def _failure(prediction: PredictionRecord, question: Question | None) -> FailureLabel | None:
    return classify(
        question=prediction.question,
        reference=prediction.reference_answer,
        output=prediction.raw_output,
        extracted=prediction.extracted_answer,
        truncated=prediction.truncated,
        loop=_looped(prediction),
        wrong_readings=dict(question.wrong_readings) if question else None,
    )


def _looped(prediction: PredictionRecord) -> bool:
    """Whether the shown output loops: the strategy's token-level flag for it where one exists, else its text."""
    details = prediction.details
    if "loop" in details:
        return bool(details["loop"])
    shown = [s for s in details.get("samples", []) if s.get("text") == prediction.raw_output]
    if shown:
        return bool(shown[0].get("loop"))
    return text_has_loop(prediction.raw_output)


def _adapter_uri(spec: EvalJobSpec) -> str | None:
    if spec.adapter is None:
        return None
    if spec.adapter.uri:
        return spec.adapter.uri
    # Only the worker knows where a train job's adapter was stored.
    raise FatalJobError(f"adapter of train job {spec.adapter.train_job} was not resolved to a path")
