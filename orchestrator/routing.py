"""Routing, decided once per job at submit: its memory need, then the memory-class queue that holds it.

The need is the peak CUDA memory that earlier evals of the same model at the same batch size
and generation length measured, when there is one, else expansion's formula (jobs.resources.vram):

    measured need = max measured CUDA peak × 1.15 (allocator fragmentation) + 500 MiB (CUDA context)

Only CUDA peaks count (a CPU run's RSS says nothing about a card); train jobs keep the formula
until train jobs record their peaks. The queue follows from the need (jobs.resources.placement).
"""

from __future__ import annotations

import dataclasses
import math

from sqlmodel import Session, col, select

from db.crud import JobDraft
from db.models import EvalResult, Job
from jobs.resources.placement import queue_for, remote_code_queue, spec_runs_remote_code
from jobs.resources.vram import CUDA_CONTEXT_MIB, FRAGMENTATION
from jobs.specs import EvalJobSpec

SimilarKey = tuple[str, bool, int, int]  # model label, with adapter, batch size, max new tokens


def similar_key(spec: EvalJobSpec) -> SimilarKey:
    return (spec.model.label, spec.adapter is not None, spec.batch_size, spec.max_new_tokens)


def measured_peaks(session: Session) -> dict[SimilarKey, float]:
    """The largest CUDA peak recorded per kind of eval: the result row names the model, the job's spec the shape."""
    rows = session.exec(
        select(EvalResult.model, EvalResult.adapter, EvalResult.peak_memory_mb, Job.spec)
        .join(Job, col(Job.id) == col(EvalResult.job_id))
        .where(EvalResult.memory_kind == "cuda")
    ).all()
    peaks: dict[SimilarKey, float] = {}
    for model, adapter, peak, spec in rows:
        key = (model, adapter is not None, int(spec.get("batch_size", 0)), int(spec.get("max_new_tokens", 0)))
        peaks[key] = max(peaks.get(key, 0.0), float(peak))
    return peaks


def route(drafts: list[JobDraft], peaks: dict[SimilarKey, float]) -> list[JobDraft]:
    """Each draft with its final memory need and its queue (None: larger than every class)."""
    return [_routed(draft, peaks) for draft in drafts]


def _routed(draft: JobDraft, peaks: dict[SimilarKey, float]) -> JobDraft:
    mib = draft.vram_mb
    if draft.kind == "eval":
        peak = peaks.get(similar_key(EvalJobSpec.model_validate(draft.spec)))
        if peak is not None:
            mib = math.ceil(peak * FRAGMENTATION + CUDA_CONTEXT_MIB)
    queue = queue_for(mib)
    if queue is not None and spec_runs_remote_code(draft.spec):
        queue = remote_code_queue(queue)  # only workers whose owner allows remote code consume it
    return dataclasses.replace(draft, vram_mb=mib, queue=queue)

