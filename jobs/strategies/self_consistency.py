"""Self-consistency: n sampled solutions per question, majority vote over their extracted answers.

On the refill engine (the default) the n samples of a question share one prefill of its
prompt; the batched engine draws them in one `generate` call. Every sample, the vote distribution and the
agreement rate are kept in the record's details; ties follow jobs.scoring.voting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.data.question import Question
from jobs.generation.engine import generate_samples
from jobs.generation.rows import Generation
from jobs.models.loading import LoadedModel
from jobs.scoring.records import PredictionRecord
from jobs.scoring.voting import majority_vote
from jobs.specs import EvalJobSpec, SelfConsistencyParams
from jobs.strategies.common import asked, judged, preset_or, sample_record, sampling


def run(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
) -> list[PredictionRecord]:
    return run_with_template(loaded, questions, spec, progress, template=preset_or(spec, "zero_shot"))


def run_with_template(
    loaded: LoadedModel,
    questions: list[Question],
    spec: EvalJobSpec,
    progress: Callable[[int, int], None] | None,
    *,
    template: str,
) -> list[PredictionRecord]:
    """Self-consistency with the prompt template named `template` (structured_sc uses its own)."""
    params = spec.strategy.parsed()
    assert isinstance(params, SelfConsistencyParams)
    samples = generate_samples(
        loaded,
        asked(spec, questions, template),
        max_new_tokens=spec.max_new_tokens,
        batch_size=spec.batch_size,
        seed=spec.seed,
        sampling=sampling(params),
        progress=progress,
        engine=spec.engine,
    )
    return [
        vote_record(q, rows, strategy=spec.strategy.name, params=params)
        for q, rows in zip(questions, samples, strict=True)
    ]


def vote_record(
    question: Question,
    generations: list[Generation],
    *,
    strategy: str,
    params: SelfConsistencyParams | None = None,
) -> PredictionRecord:
    """The voted prediction of one question under the params' voting rule (default: skip, numeric);
    raw_output is the first sample that cast the winning vote."""
    rules = params or SelfConsistencyParams()
    by_text = rules.normalise == "string"
    samples = [sample_record(g, question, literal=by_text) for g in generations]
    vote = majority_vote([s["literal" if by_text else "answer"] for s in samples], invalid_votes=rules.invalid_votes)
    shown = generations[vote.winner_index or 0]
    winner = samples[vote.winner_index]["answer"] if vote.winner is not None and vote.winner_index is not None else None
    details: dict[str, Any] = {
        "strategy": strategy,
        "samples": samples,
        "votes": vote.counts,
        "agreement": vote.agreement,
        "truncated_samples": sum(s["truncated"] for s in samples),
        "loop_samples": sum(s["loop"] for s in samples),
    }
    return judged(
        question,
        raw_output=shown.text,
        extracted=winner,
        output_tokens=sum(g.output_tokens for g in generations),  # the question's whole cost
        latency_s=max(g.latency_s for g in generations),
        truncated=shown.truncated,
        details=details,
    )
