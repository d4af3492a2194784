"""Submitting a sweep: validate, expand, record in one transaction, then hand jobs to an executor."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from db import crud
from db.broker import check_broker
from db.crud import JobDraft, SubmitReport
from db.services import prepare_database
from db.session import session_scope
from db.settings import Settings
from db.shipped import store_blobs
from jobs.errors import SweepError
from orchestrator.contamination import load_sweep_checked
from orchestrator.expand import expand, sweep_hash
from orchestrator.routing import measured_peaks, route
from orchestrator.sweep import SweepSpec


@dataclass(frozen=True)
class Plan:
    sweep: SweepSpec
    spec_hash: str
    drafts: list[JobDraft]
    # The sweep's local data files by sha256: stored with its jobs, read back by the workers (jobs.data.shipped).
    data: dict[str, bytes] = field(default_factory=dict)
    # Train/eval contamination per pair (jobs.data.contamination), recorded with the sweep.
    overlap: list[dict[str, Any]] | None = None


def plan(path: str | Path) -> Plan:
    """Everything `--dry-run` shows; touches no database or broker (so routes by the formula alone)."""
    sweep, data, overlaps = load_sweep_checked(path)
    overlap = [o.to_json() for o in overlaps] if overlaps else None
    return Plan(sweep=sweep, spec_hash=sweep_hash(sweep), drafts=expand(sweep), data=data, overlap=overlap)


def record(plan: Plan, settings: Settings) -> SubmitReport:
    """Write the sweep and its jobs; every check that can refuse runs before the first write."""
    if settings.embedded and plan.sweep.model.trust_remote_code and not settings.allow_remote_code:
        # Embedded jobs run here, in this process: this machine's owner consents like a worker's would.
        raise SweepError(
            "model.trust_remote_code: the model repo's own code would run on this machine; "
            "set REASONFLEET_ALLOW_REMOTE_CODE=1 to allow it (workers: `workers start --allow-remote-code`)"
        )
    prepare_database(settings)
    if settings.broker_url:
        check_broker(settings.broker_url)
    with session_scope() as session:
        drafts = route(plan.drafts, measured_peaks(session))  # measured CUDA peaks beat the formula
        drafts = with_versions(drafts)
        store_blobs(session, plan.data)  # same transaction: no job names data the database lacks
        return crud.record_sweep(
            session,
            name=plan.sweep.name,
            seed=plan.sweep.seed,
            spec=plan.sweep.model_dump(mode="json"),
            spec_hash=plan.spec_hash,
            drafts=drafts,
            max_attempts=plan.sweep.resources.max_attempts,
            overlap=plan.overlap,
        )


def with_versions(drafts: list[JobDraft]) -> list[JobDraft]:
    """Each model job's spec with this machine's result-changing package versions (jobs.resources.versions).

    Added after the content hash was taken: the same job submitted from another machine is the same job;
    the versions say what a worker must run it with.
    """
    from jobs.resources.versions import NOT_INSTALLED, installed_versions

    versions = {package: version for package, version in installed_versions().items() if version != NOT_INSTALLED}
    return [
        replace(draft, spec={**draft.spec, "versions": versions}) if draft.kind in VERSIONED_KINDS else draft
        for draft in drafts
    ]


VERSIONED_KINDS = frozenset({"eval", "train", "audit", "traces"})


def publish(report: SubmitReport, settings: Settings) -> None:
    """Send the ready jobs to Celery. Rows exist first, so a lost message is found by reconcile."""
    from db.broker import enqueue_jobs, make_app

    app = make_app(settings)
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
    enqueue_jobs(app, report.to_enqueue)
