"""Pieces the strategies share: templates with the job's overrides, per-sample records, sampling settings."""

from __future__ import annotations

from typing import Any

from jobs.data.prompts import build_messages, load_templates, question_template
from jobs.data.question import Question
from jobs.generation.rows import Conversation, Generation, Sampling
from jobs.scoring.answers import Extraction, answers_match, extract
from jobs.scoring.records import PredictionRecord
from jobs.scoring.repetition import has_repetition_loop
from jobs.specs import EvalJobSpec, GreedyParams, SelfConsistencyParams


def templates(spec: EvalJobSpec) -> dict[str, dict[str, Any]]:
    """The packaged prompt templates with the sweep's overrides merged in."""
    return load_templates(spec.prompts)


def asked(spec: EvalJobSpec, questions: list[Question], template: str) -> list[Conversation]:
    """Each question's messages with the named template, the sweep's overrides merged in."""
    found = templates(spec)
    return [build_messages(q, template, found) for q in questions]


def preset_or(spec: EvalJobSpec, default: str) -> str:
    """The template a strategy asks with: the run's prompt preset (eval.prompt), or `default` under zero_shot."""
    return question_template(spec.prompt, default)


def sampling(params: SelfConsistencyParams) -> Sampling:
    return Sampling(
        n=params.n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k, min_p=params.min_p,
        repetition_penalty=params.repetition_penalty,
    )


def greedy_sampling(spec: EvalJobSpec) -> Sampling:
    """Greedy decoding with the strategy's repetition penalty, where it has one (greedy's own parameter)."""
    params = spec.strategy.parsed()
    return Sampling(repetition_penalty=params.repetition_penalty if isinstance(params, GreedyParams) else 1.0)


def sample_record(generation: Generation, question: Question, *, literal: bool = False) -> dict[str, Any]:
    """What details keep of one sample: its text, answer, cost and failure flags; with `literal`, the answer
    as written too (string voting), and `ambiguous` / `cut` where extraction found them."""
    found = extract(generation.text)
    record: dict[str, Any] = {
        "text": generation.text,
        "answer": found.answer,
        "correct": answers_match(found.answer, question.answer),
        "output_tokens": generation.output_tokens,
        "truncated": generation.truncated,
        "loop": has_repetition_loop(generation.token_ids),
        **thinking(generation),
    }
    if literal:
        record["literal"] = found.literal
    return record | extraction_flags(found)


def extraction_flags(found: Extraction) -> dict[str, bool]:
    """`ambiguous` (several `####` lines disagree; the first was taken) and `cut` (a next turn the model invented
    after answering was dropped) when they hold: flags the failure taxonomy can read from details."""
    return {key: True for key, value in (("ambiguous", found.ambiguous), ("cut", found.cut)) if value}


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
