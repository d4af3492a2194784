"""Pieces the strategies share: templates with the job's overrides, per-sample records, sampling settings."""

from __future__ import annotations

from typing import Any

from jobs.data.prompts import load_templates
from jobs.data.question import Question
from jobs.generation.rows import Generation, Sampling
from jobs.scoring.answers import answers_match, extract_answer
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.specs import EvalJobSpec, SelfConsistencyParams


def templates(spec: EvalJobSpec) -> dict[str, dict[str, Any]]:
    """The packaged prompt templates with the sweep's overrides merged in."""
    return load_templates(spec.prompts)


def sampling(params: SelfConsistencyParams) -> Sampling:
    return Sampling(n=params.n, temperature=params.temperature, top_p=params.top_p)


def sample_record(generation: Generation, question: Question) -> dict[str, Any]:
    """What details keep of one sample: its text, answer, cost and failure flags."""
    answer = extract_answer(generation.text)
    return {
        "text": generation.text,
        "answer": answer,
        "correct": answers_match(answer, question.answer),
        "output_tokens": generation.output_tokens,
        "truncated": generation.truncated,
        "loop": has_repetition_loop(generation.token_ids),
        **thinking(generation),
    }


def thinking(generation: Generation) -> dict[str, int]:
    """{"thinking_tokens": n} for an output with a thinking block (jobs.scoring.thinking), else {}."""
    return {} if generation.thinking_tokens is None else {"thinking_tokens": generation.thinking_tokens}


def judged(
    question: Question, *, raw_output: str, extracted: str | None, output_tokens: int, latency_s: float,
    truncated: bool, details: dict[str, Any],
) -> PredictionRecord:
    """The record of a question's final answer, judged against its reference."""
    return PredictionRecord(
        question_id=question.id,
        question=question.question,
        reference_answer=question.answer,
        raw_output=raw_output,
        extracted_answer=extracted,
        correct=answers_match(extracted, question.answer),
        output_tokens=output_tokens,
        latency_s=latency_s,
        complexity=question.complexity,
        truncated=truncated,
        details=details,
    )
