"""Turning a job function's outcome into database rows."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from db.models import EvalResult, Prediction, TrainResult
from jobs.scoring.results import EvalOutcome
from jobs.scoring.taxonomy import FailureLabel
from jobs.specs import EvalJobSpec, TrainJobSpec

if TYPE_CHECKING:
    from jobs.training.train import TrainOutcome


def eval_rows(job_id: str, spec: EvalJobSpec, outcome: EvalOutcome) -> tuple[EvalResult, list[Prediction]]:
    result = EvalResult(
        job_id=job_id,
        model=spec.model.label,
        adapter=spec.adapter.label if spec.adapter else None,
        strategy=spec.strategy.label,
        dataset=spec.dataset.label,
        n=outcome.n,
        correct=outcome.correct,
        pass_at_1=outcome.pass_at_1,
        ci_low=outcome.ci_low,
        ci_high=outcome.ci_high,
        mean_output_tokens=outcome.mean_output_tokens,
        wall_s=outcome.wall_s,
        tokens_per_s=outcome.tokens_per_s,
        peak_memory_mb=outcome.peak_memory_mb,
        memory_kind=outcome.memory_kind,
        device=outcome.device,
        seed=spec.seed,
        **(asdict(outcome.metrics) if outcome.metrics else {}),
        taxonomy=outcome.taxonomy,  # {} for a run without wrong answers; NULL only for rows from before 0005
        perplexity=outcome.perplexity,
        run_info=outcome.run_info,
    )
    predictions = [
        Prediction(
            job_id=job_id,
            question_id=p.question_id,
            question=pg_text(p.question),
            reference_answer=p.reference_answer,
            raw_output=pg_text(p.raw_output),
            extracted_answer=p.extracted_answer,
            correct=p.correct,
            output_tokens=p.output_tokens,
            latency_s=p.latency_s,
            complexity=p.complexity,
            truncated=p.truncated,
            details=p.details,
            **_failure_columns(p.failure),
        )
        for p in outcome.predictions
    ]
    return result, predictions


def _failure_columns(failure: FailureLabel | None) -> dict[str, Any]:
    if failure is None:
        return {}
    return {
        "failure_label": failure.label,
        "failure_exact": failure.exact,
        "failure_evidence": pg_text(failure.evidence),
        "failure_reading": failure.reading,
    }


def train_row(job_id: str, spec: TrainJobSpec, outcome: TrainOutcome) -> TrainResult:
    return TrainResult(job_id=job_id, seed=spec.seed, **outcome.to_json())


def pg_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a model (a random test model, or a real one) may emit it.
    U+FFFD keeps the position visible and the length unchanged."""
    return text.replace("\x00", "\ufffd")
