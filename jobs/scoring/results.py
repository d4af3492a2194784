"""What an eval job returns: per-question predictions and the aggregate computed from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.scoring.metrics import RunMetrics, run_metrics
from jobs.scoring.records import PredictionRecord
from jobs.scoring.stats import wilson_interval
from jobs.scoring.taxonomy import count_labels


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
    metrics: RunMetrics | None = None  # token, efficiency and strategy metrics (jobs.scoring.metrics)
    # Failure label -> wrong predictions that carry it, in jobs.scoring.taxonomy.LABELS order; {}: none wrong.
    taxonomy: dict[str, int] = field(default_factory=dict)
    perplexity: float | None = None  # on the reference solutions (jobs.scoring.perplexity), when the spec asks
    # What ran (jobs.models.loading.LoadedModel.info): quantization, compute dtype, thinking mode, warnings.
    run_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_predictions(
        cls,
        predictions: list[PredictionRecord],
        *,
        wall_s: float,
        peak_memory_mb: float,
        memory_kind: str,
        device: str,
    ) -> EvalOutcome:
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
            taxonomy=count_labels(p.failure for p in predictions),
        )
