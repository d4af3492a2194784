"""What an eval job returns: per-question predictions and the aggregate computed from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.stats import wilson_interval

if TYPE_CHECKING:
    from jobs.metrics import RunMetrics


@dataclass(frozen=True)
class PredictionRecord:
    question_id: str
    question: str
    reference_answer: str
    raw_output: str
    extracted_answer: str | None
    correct: bool
    output_tokens: int
    latency_s: float
    complexity: int
    truncated: bool = False
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalOutcome:
    predictions: list[PredictionRecord]
    n: int
    correct: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    mean_output_tokens: float
    wall_s: float
    tokens_per_s: float
    peak_memory_mb: float
    memory_kind: str  # "cuda" (peak allocated) or "rss" (peak resident set of the process)
    device: str
    metrics: RunMetrics | None = None  # token, efficiency and strategy metrics (jobs.metrics)

    @classmethod
    def from_predictions(
        cls,
        predictions: list[PredictionRecord],
        *,
        wall_s: float,
        peak_memory_mb: float,
        memory_kind: str,
        device: str,
    ) -> "EvalOutcome":
        from jobs.metrics import run_metrics  # jobs.metrics imports this module

        n = len(predictions)
        if n == 0:
            raise ValueError("an eval needs at least one question")
        correct = sum(p.correct for p in predictions)
        low, high = wilson_interval(correct, n)
        tokens = sum(p.output_tokens for p in predictions)
        return cls(
            predictions=predictions,
            n=n,
            correct=correct,
            pass_at_1=correct / n,
            ci_low=low,
            ci_high=high,
            mean_output_tokens=tokens / n,
            wall_s=wall_s,
            tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
            peak_memory_mb=peak_memory_mb,
            memory_kind=memory_kind,
            device=device,
            metrics=run_metrics(predictions),
        )
