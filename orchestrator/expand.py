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
    CurateJobSpec,
    CurateParams,
    DatasetSpec,
    EvalJobSpec,
    Method,
    ModelSpec,
    StrategySpec,
    TracesJobSpec,
    TraceSource,
    TracesParams,
    TrainJobSpec,
    run_label,
)
from orchestrator.sweep import SweepSpec, TrainGrid


def content_hash(payload: Any) -> str:
    """sha256 of canonical JSON: key order and whitespace never change a hash."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def sweep_hash(sweep: SweepSpec) -> str:
    return content_hash(sweep.model_dump(mode="json"))


def expand(sweep: SweepSpec) -> list[JobDraft]:
    """Train jobs first, then evals: the base model per strategy, and each adapter per strategy.

    Each draft carries the formula's memory estimate; submit routes it (orchestrator.routing).
    """
    drafts: list[JobDraft] = []
    models = sweep.eval_models()
    if sweep.eval.include_base or sweep.train is None:
        drafts += [_eval_draft(sweep, m, strategy, adapter=None) for m in models for strategy in sweep.eval.strategies]
    curate = _curate_drafts(sweep.curate) if sweep.curate else []
    teachers = [_traces_draft(sweep.traces)] if sweep.traces else []
    drafts = curate + teachers + drafts
    if sweep.train is None:
        return drafts
    traces_job = teachers[0] if teachers else None
    for method, rank, traces, source in sweep.train.fine_tunes():
        own_curated = source is not None and source.name == "curated" and bool(curate) and (
            sweep.curate is not None and source.curated == sweep.curate.name
        )
        train = _train_draft(sweep, sweep.train, method=method, rank=rank, traces=traces, source=source,
                             curate=curate[-1] if own_curated else None, teacher=_own_traces(sweep, traces_job))
        adapter = AdapterRef(train_job=train.spec_hash, label=sweep.train.adapter_label(method, rank, traces, source))
        drafts.append(train)
        if sweep.train.audit:
            drafts.append(_audit_draft(sweep, train))
        drafts += [
            _eval_draft(sweep, m, strategy, adapter=adapter, after=train)
            for m in models
            for strategy in sweep.eval.strategies
        ]
    return drafts


# A curate job's baseline evals run on the curate source, not the sweep's questions: the label says so, and
# orchestrator.analysis never takes one as the sweep's reference.
CURATE_BASELINE = "baseline "


def _curate_drafts(curate: CurateParams) -> list[JobDraft]:
    """The baseline evals on the curate source, then the curate job that depends on them (last)."""
    baselines = [
        _draft(
            EvalJobSpec(model=b.model, dataset=curate.source, strategy=b.strategy, max_new_tokens=b.max_new_tokens),
            f"{CURATE_BASELINE}{run_label(b.model.label, None, b.strategy.label)} for curate {curate.name}",
        )
        for b in curate.baselines
    ]
    hashes = sorted({b.spec_hash for b in baselines})
    job = _draft(CurateJobSpec(curate=curate, baselines=hashes), f"curate {curate.name}", depends_on=tuple(hashes))
    return [*baselines, job]


def _traces_draft(traces: TracesParams) -> JobDraft:
    return _draft(TracesJobSpec(traces=traces), f"traces {traces.name}")


def _own_traces(sweep: SweepSpec, traces_job: JobDraft | None) -> JobDraft | None:
    """This sweep's traces job when train.trace_source names it (a sha256 names a stored set instead)."""
    ref = sweep.train.trace_source if sweep.train else None
    own = ref is not None and sweep.traces is not None and ref.traces == sweep.traces.name
    return traces_job if own else None


def _train_draft(
    sweep: SweepSpec, grid: TrainGrid, *, method: Method, rank: int, traces: int, source: DatasetSpec | None,
    curate: JobDraft | None = None, teacher: JobDraft | None = None,
) -> JobDraft:
    tag = grid.source_tag(source)
    if curate is not None:  # this sweep's curated set: known by its curate job until that job has run
        source = DatasetSpec(name="curated", curated=curate.spec_hash)
    params = grid.params()
    if teacher is not None:  # this sweep's trace set: known by its traces job until that job has run
        params = params.model_copy(update={"trace_source": TraceSource(traces=teacher.spec_hash)})
    spec = TrainJobSpec(
        model=sweep.train_model(),
        method=method,
        lora_rank=rank,
        traces=traces,
        source=source,
        params=params,
        seed=sweep.seed,
    )
    after = tuple(job.spec_hash for job in (curate, teacher) if job is not None)
    label = f"train {sweep.train_model().label} {method} r{rank} t{traces}" + (f" {tag}" if tag else "")
    return _draft(spec, label, depends_on=after)


def _eval_draft(
    sweep: SweepSpec,
    model: ModelSpec,
    strategy: StrategySpec,
    *,
    adapter: AdapterRef | None,
    after: JobDraft | None = None,
) -> JobDraft:
    spec = EvalJobSpec(
        model=model,
        adapter=adapter,
        dataset=sweep.dataset,
        strategy=strategy,
        max_new_tokens=sweep.eval.max_new_tokens,
        batch_size=sweep.eval.batch_size,
        seed=sweep.seed,
        prompts=sweep.eval.prompts,
        engine=sweep.eval.engine,
        perplexity=sweep.eval.perplexity,
        prompt=sweep.eval.prompt,
    )
    label = run_label(model.label, adapter.label if adapter else None, strategy.label)
    return _draft(spec, label, depends_on=(after.spec_hash,) if after else ())


def _audit_draft(sweep: SweepSpec, train: JobDraft) -> JobDraft:
    spec = AuditJobSpec(
        train=TrainJobSpec.model_validate(train.spec),
        train_job=train.spec_hash,
        max_new_tokens=sweep.eval.max_new_tokens,
        batch_size=sweep.eval.batch_size,
    )
    return _draft(spec, "audit " + train.label.removeprefix("train "), depends_on=(train.spec_hash,))


def _draft(
    spec: EvalJobSpec | TrainJobSpec | AuditJobSpec | CurateJobSpec | TracesJobSpec,
    label: str,
    depends_on: tuple[str, ...] = (),
) -> JobDraft:
    payload = spec.model_dump(mode="json")
    # The estimate reads at most a local model directory's config.json; same input, same output.
    return JobDraft(
        spec_hash=content_hash(payload),
        kind=spec.kind,
        label=label,
        spec=payload,
        depends_on=depends_on,
        vram_mb=_vram_mb(spec),
    )


def _vram_mb(spec: EvalJobSpec | TrainJobSpec | AuditJobSpec | CurateJobSpec | TracesJobSpec) -> int:
    if isinstance(spec, CurateJobSpec):
        return 0  # curation runs on the CPU
    if isinstance(spec, TracesJobSpec):
        return estimate(spec.traces.teacher_eval()).mib  # the teacher generates as an eval does
    return estimate(spec).mib
