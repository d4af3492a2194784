"""Correct the VRAM formula with what real runs measured: the peak CUDA memory of earlier evals
of the same model at the same batch size and generation length replaces the estimate.

    corrected = max measured CUDA peak × 1.15 (allocator fragmentation) + 500 MiB (CUDA context)

Only CUDA peaks count (a CPU run's RSS says nothing about a card); train jobs keep the formula
until train jobs record their peaks.
"""

from __future__ import annotations

import dataclasses
import math

from sqlmodel import Session, col, select

from db.crud import JobDraft
from db.models import EvalResult, Job
from jobs.resources.vram import CUDA_CONTEXT_MIB, FRAGMENTATION
from workers.routing import queue_for

SimilarKey = tuple[str, bool, int, int]  # model label, with adapter, batch size, max new tokens


def measured_peaks(session: Session) -> dict[SimilarKey, float]:
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


def correct(drafts: list[JobDraft], peaks: dict[SimilarKey, float]) -> list[JobDraft]:
    if not peaks:
        return drafts
    return [_corrected(draft, peaks) for draft in drafts]


def _corrected(draft: JobDraft, peaks: dict[SimilarKey, float]) -> JobDraft:
    if draft.kind != "eval":
        return draft
    spec = draft.spec
    model = spec["model"]
    label = model.get("name") or _label(model)
    key = (label, spec.get("adapter") is not None, int(spec["batch_size"]), int(spec["max_new_tokens"]))
    if key not in peaks:
        return draft
    mib = math.ceil(peaks[key] * FRAGMENTATION + CUDA_CONTEXT_MIB)
    return dataclasses.replace(draft, vram_mb=mib, queue=queue_for(mib))


def _label(model: dict) -> str:
    from jobs.specs import ModelSpec

    return ModelSpec.model_validate(model).label
