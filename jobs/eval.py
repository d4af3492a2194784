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
from jobs.scoring.lm_eval_compat import TASK_OF_PROMPT
from jobs.scoring.lm_eval_compat import score as lm_eval_score
from jobs.scoring.perplexity import perplexity
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
        # After the timing: perplexity is a separate measurement, not part of the strategy's cost.
        measured = perplexity(loaded, questions, batch_size=min(spec.batch_size, 8)) if spec.perplexity else None
    outcome = EvalOutcome.from_predictions(
        lm_eval_scored(label_failures(count_thinking(predictions), questions), questions, prompt=spec.prompt),
        wall_s=wall_s,
        peak_memory_mb=memory.peak_mb,
        memory_kind=memory.kind,
        device=loaded.device,
    )
    return replace(outcome, perplexity=measured, run_info=dict(loaded.info))


def count_thinking(predictions: list[PredictionRecord]) -> list[PredictionRecord]:
    """The records with `answer_tokens` beside `thinking_tokens` where an output had a thinking block, every
    sample of a question counted (as output_tokens counts them); budget forcing counts its own phases."""
    counted = []
    for p in predictions:
        samples = p.details.get("samples") or []
        spent = [s["thinking_tokens"] for s in samples if "thinking_tokens" in s]
        if "answer_tokens" in p.details or ("thinking_tokens" not in p.details and not spent):
            counted.append(p)
            continue
        thinking = p.details["thinking_tokens"] if "thinking_tokens" in p.details else sum(spent)
        details = {**p.details, "thinking_tokens": thinking, "answer_tokens": p.output_tokens - thinking}
        counted.append(replace(p, details=details))
    return counted


def label_failures(predictions: list[PredictionRecord], questions: list[Question]) -> list[PredictionRecord]:
    """The records with every wrong one labelled by jobs.scoring.taxonomy (with its question's known wrong readings)."""
    by_id = {q.id: q for q in questions}
    return [p if p.correct else replace(p, failure=_failure(p, by_id.get(p.question_id))) for p in predictions]


def lm_eval_scored(
    predictions: list[PredictionRecord], questions: list[Question], *, prompt: str
) -> list[PredictionRecord]:
    """The records with lm-eval's strict-match and flexible-extract (jobs.scoring.lm_eval_compat) in their details,
    under the rules of the lm-eval task the prompt preset follows."""
    solutions = {q.id: q.solution for q in questions}
    task = TASK_OF_PROMPT[prompt]
    return [
        replace(p, details={**p.details, "lm_eval": lm_eval_score(_responses(p), solutions[p.question_id], task=task)
                            .as_json()})
        for p in predictions
    ]


def _responses(prediction: PredictionRecord) -> list[str]:
    """What lm-eval would score: a vote's samples (majority-voted there as in its maj@k filters), else the final
    output (a reflection's revision, budget forcing's whole text)."""
    samples = prediction.details.get("samples")
    if samples and not prediction.details.get("reflected"):
        return [str(s["text"]) for s in samples]
    return [prediction.raw_output]


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
