"""Run-level metrics beyond pass@1, computed from the prediction records.

- median_output_tokens: median of per-question output tokens (all samples and turns of
  a question counted: what the question cost).
- mean_thinking_tokens / mean_answer_tokens: budget forcing's two phases; None elsewhere.
- res (Reasoning Efficiency Score): mean over questions of complexity × correct /
  output_tokens, where complexity is the number of solution steps (the `<<…>>`
  calculations of GSM8K's reference solution). A correct 4-step answer in 100 tokens
  scores 0.04; wrong answers score 0. Higher is better: more reasoning per token.
- mean_latency_s: mean per-question wall latency (under batching, the time its batch took).
- truncated: samples that hit their token cap; repetition_loops: samples with a
  repetition loop (jobs.scoring.repetition). A greedy question is one sample, SC's n.
- fixes / breaks: reflection strategies' wrong→right and right→wrong revisions; None elsewhere.
- mean_agreement: self-consistency's mean winner share; None elsewhere.
- strict_match / flexible_extract: lm-evaluation-harness's GSM8K exact match under its two filters
  (jobs.scoring.lm_eval_compat), the share of questions, under the rules of `lm_eval_task`
  (gsm8k or gsm8k_cot); None when the predictions carry no lm-eval scores.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobs.scoring.records import PredictionRecord


@dataclass(frozen=True)
class RunMetrics:
    median_output_tokens: float
    mean_thinking_tokens: float | None
    mean_answer_tokens: float | None
    res: float
    mean_latency_s: float
    truncated: int
    repetition_loops: int
    fixes: int | None
    breaks: int | None
    mean_agreement: float | None
    strict_match: float | None = None
    flexible_extract: float | None = None
    lm_eval_task: str | None = None


def run_metrics(predictions: Sequence[PredictionRecord]) -> RunMetrics:
    details = [p.details for p in predictions]
    reflective = [d for d in details if "fixed" in d]
    scored = [d["lm_eval"] for d in details if "lm_eval" in d]
    return RunMetrics(
        median_output_tokens=float(statistics.median(p.output_tokens for p in predictions)),
        mean_thinking_tokens=_mean_of(details, "thinking_tokens"),
        mean_answer_tokens=_mean_of(details, "answer_tokens"),
        res=statistics.fmean(reasoning_efficiency(p) for p in predictions),
        mean_latency_s=statistics.fmean(p.latency_s for p in predictions),
        truncated=sum(int(p.details.get("truncated_samples", p.truncated)) for p in predictions),
        repetition_loops=sum(int(d.get("loop_samples", d.get("loop", False))) for d in details),
        fixes=sum(d["fixed"] for d in reflective) if _applies(details, "fixed", "reflected") else None,
        breaks=sum(d["broke"] for d in reflective) if _applies(details, "fixed", "reflected") else None,
        mean_agreement=_mean_of(details, "agreement"),
        strict_match=_mean_of(scored, "strict_match"),
        flexible_extract=_mean_of(scored, "flexible_extract"),
        lm_eval_task=scored[0]["task"] if scored else None,
    )


def reasoning_efficiency(prediction: PredictionRecord) -> float:
    """complexity × correct / output tokens of one question (0 when it generated nothing)."""
    if not prediction.correct or prediction.output_tokens <= 0:
        return 0.0
    return prediction.complexity / prediction.output_tokens


def _mean_of(details: list[dict[str, Any]], key: str) -> float | None:
    values = [d[key] for d in details if key in d]
    return statistics.fmean(values) if values else None


def _applies(details: list[dict[str, Any]], *keys: str) -> bool:
    # sc_reflect counts 0 fixes when no question needed reflecting, rather than "not applicable".
    return any(key in d for d in details for key in keys)
