"""One question's prediction, as every strategy records it and every metric reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.scoring.taxonomy import FailureLabel


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
    details: dict[str, Any] = field(default_factory=dict)  # strategy-specific bookkeeping, stored as JSON
    failure: FailureLabel | None = None  # why a wrong answer fails (jobs.scoring.taxonomy); None when right
