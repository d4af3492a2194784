"""Expansion: a validated sweep becomes job drafts. Pure: no I/O, same input, same output."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from db.crud import JobDraft
from jobs.resources.vram import estimate
from jobs.specs import (
    AdapterRef,
    AuditJobSpec,
    EvalJobSpec,
    StrategySpec,
    TrainJobSpec,
    run_label,
)
from orchestrator.sweep import SweepSpec, TrainGrid
from workers.routing import queue_for


def content_hash(payload: Any) -> str:
    """sha256 of canonical JSON: key order and whitespace never change a hash."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def sweep_hash(sweep: SweepSpec) -> str:
    return content_hash(sweep.model_dump(mode="json"))


def expand(sweep: SweepSpec) -> list[JobDraft]:
    """Train jobs first, then evals: the base model per strategy, and each adapter per strategy."""
    drafts: list[JobDraft] = []
    if sweep.eval.include_base or sweep.train is None:
        drafts += [_eval_draft(sweep, strategy, adapter=None) for strategy in sweep.eval.strategies]
    for method, rank, traces in sweep.train.grid() if sweep.train else []:
        train = _train_draft(sweep, sweep.train, method=method, rank=rank, traces=traces)  # type: ignore[arg-type]
        adapter = AdapterRef(train_job=train.spec_hash, label=f"{method}-r{rank}-t{traces}")
        drafts.append(train)
        if sweep.train.audit:  # type: ignore[union-attr]
            drafts.append(_audit_draft(sweep, train))
        drafts += [_eval_draft(sweep, strategy, adapter=adapter, after=train) for strategy in sweep.eval.strategies]
    return drafts


def _train_draft(sweep: SweepSpec, grid: TrainGrid, *, method: str, rank: int, traces: int) -> JobDraft:
    params = grid.model_dump(mode="json", exclude={"method", "lora_rank", "traces", "source", "audit"})
    spec = TrainJobSpec(
        model=sweep.model, method=method, lora_rank=rank, traces=traces,  # type: ignore[arg-type]
        source=grid.source, params=params, seed=sweep.seed,
    )
    payload = spec.model_dump(mode="json")
    label = f"train {sweep.model.label} {method} r{rank} t{traces}"
    return JobDraft(spec_hash=content_hash(payload), kind="train", label=label, spec=payload, **_routing(spec))


def _eval_draft(sweep: SweepSpec, strategy: StrategySpec, *, adapter: AdapterRef | None, after: JobDraft | None = None) -> JobDraft:
    spec = EvalJobSpec(
        model=sweep.model, adapter=adapter, dataset=sweep.dataset, strategy=strategy,
        max_new_tokens=sweep.eval.max_new_tokens, batch_size=sweep.eval.batch_size, seed=sweep.seed,
        prompts=sweep.eval.prompts, engine=sweep.eval.engine,
    )
    payload = spec.model_dump(mode="json")
    label = run_label(sweep.model.label, adapter.label if adapter else None, strategy.label)
    depends_on = (after.spec_hash,) if after else ()
    return JobDraft(spec_hash=content_hash(payload), kind="eval", label=label, spec=payload, depends_on=depends_on, **_routing(spec))


def _audit_draft(sweep: SweepSpec, train: JobDraft) -> JobDraft:
    spec = AuditJobSpec(
        train=TrainJobSpec.model_validate(train.spec), train_job=train.spec_hash,
        max_new_tokens=sweep.eval.max_new_tokens, batch_size=sweep.eval.batch_size,
    )
    payload = spec.model_dump(mode="json")
    label = "audit " + train.label.removeprefix("train ")
    return JobDraft(spec_hash=content_hash(payload), kind="audit", label=label, spec=payload, depends_on=(train.spec_hash,), **_routing(spec))


def _routing(spec: EvalJobSpec | TrainJobSpec | AuditJobSpec) -> dict:
    # The estimate reads at most a local model directory's config.json; same input, same output.
    mib = estimate(spec).mib
    return {"vram_mb": mib, "queue": queue_for(mib)}
