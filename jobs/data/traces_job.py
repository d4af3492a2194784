"""The traces job: a teacher model answers a source's questions; the answers that reach the reference are traces.

The teacher runs through jobs.eval.run (same strategies, engines and prompts as any eval), so "the
teacher" is an eval run and its pass rate is that run's pass@1. A prediction is kept when it was
scored right and its own text ends in that answer (for a vote, the shown sample cast the winning
vote: jobs.strategies.self_consistency), as a `{question, response}` line: a distill trace file
(jobs.training.data.parse_traces reads it back). Lines keep the source's order, so the same teacher
output gives the same bytes and the same sha256.

Stored like a curated set (jobs.data.curate_job): `traces/<name>/<sha256>/` holding `data.jsonl` and
`manifest.json` (kind "traces", the teacher's run label, its pass rate with n, the kept count, the
seed, the JSONL's sha256).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.data.curate_job import store_dataset
from jobs.data.shipped import Shipped
from jobs.errors import FatalJobError
from jobs.scoring.records import PredictionRecord
from jobs.specs import TracesJobSpec, run_label


@dataclass(frozen=True)
class TraceSet:
    lines: list[dict[str, str]]  # {question, response}, in source order
    n: int  # questions the teacher answered
    correct: int  # answered right (the eval's pass@1 numerator)

    @property
    def jsonl(self) -> bytes:
        return "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in self.lines).encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.jsonl).hexdigest()


@dataclass(frozen=True)
class TracesOutcome:
    traces: TraceSet
    manifest: dict[str, Any]
    uri: str | None


def keep(predictions: Sequence[PredictionRecord]) -> TraceSet:
    """The right answers whose own text states the reference answer, as traces."""
    from jobs.scoring.answers import answers_match, extract_answer

    lines = [
        {"question": p.question, "response": p.raw_output.strip()}
        for p in predictions
        if p.correct and answers_match(extract_answer(p.raw_output), p.reference_answer)
    ]
    return TraceSet(lines=lines, n=len(predictions), correct=sum(p.correct for p in predictions))


def run(
    spec: TracesJobSpec,
    *,
    artifacts_root: str | None,
    shipped: Shipped | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TracesOutcome:
    """Generate, keep, check the count, store. Fewer than `min_kept` kept fails with the counts."""
    from jobs import eval as eval_job

    params = spec.traces
    outcome = eval_job.run(params.teacher_eval(), progress=progress, shipped=shipped)
    traces = keep(outcome.predictions)
    if len(traces.lines) < params.min_kept:
        raise FatalJobError(
            f"traces.min_kept: {params.min_kept} asked but the teacher kept {len(traces.lines)} traces "
            f"(answered {traces.n}, right {traces.correct}, right with the answer in its own text "
            f"{len(traces.lines)})"
        )
    about = manifest(spec, traces)
    uri = (
        store_dataset("traces", str(about["name"]), traces.sha256, traces.jsonl, about, artifacts_root)
        if artifacts_root else None
    )
    return TracesOutcome(traces=traces, manifest=about, uri=uri)


def manifest(spec: TracesJobSpec, traces: TraceSet) -> dict[str, Any]:
    params = spec.traces
    teacher = params.teacher
    return {
        "kind": "traces",
        "name": params.name,
        "teacher": run_label(teacher.model.label, None, teacher.strategy.label),
        "teacher_spec": params.teacher_eval().model_dump(mode="json"),
        "pass_rate": round(traces.correct / traces.n, 6) if traces.n else 0.0,
        "n": traces.n,
        "kept": len(traces.lines),
        "counts": {"source": traces.n, "correct": traces.correct, "kept": len(traces.lines)},
        "sources": [params.source.label],
        "seed": params.seed,
        "sha256": traces.sha256,
    }


