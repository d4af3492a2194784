"""One question's prediction, as every strategy records it and every metric reads it."""

from __future__ import annotations

from dataclasses import dataclass, field


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
