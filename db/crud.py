"""Small, keyword-only database operations on sweeps and jobs. Session first, never commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exists, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.models import (
    AuditResult,
    EvalResult,
    Job,
    JobDependency,
    Prediction,
    Sweep,
    SweepJob,
    TrainResult,
)
from db.states import TERMINAL, JobState, moved, now, transition

if TYPE_CHECKING:
    from sqlalchemy.sql.dml import ReturningUpdate

T = TypeVar("T")


@dataclass(frozen=True)
class JobDraft:
    """A job as expansion plans it, before it has a row. `depends_on` holds spec hashes."""

    spec_hash: str
    kind: str
    label: str
    spec: dict[str, Any]
    depends_on: tuple[str, ...] = ()
    vram_mb: int | None = None  # the expansion's VRAM estimate (jobs.resources.vram), routes the job to a memory class
    queue: str | None = None


@dataclass
class SubmitReport:
    sweep: Sweep
    sweep_existed: bool
    new_jobs: int = 0
    already_succeeded: int = 0
    retried: int = 0
    in_progress: int = 0
    to_enqueue: list[str] = field(default_factory=list)



# --------------------------------------------------------------------------- submit


def record_sweep(
    session: Session,
    *,
    name: str,
    seed: int,
    spec: dict[str, Any],
    spec_hash: str,
    drafts: list[JobDraft],
    max_attempts: int,
    overlap: list[dict[str, Any]] | None = None,
) -> SubmitReport:
    """Create or find the sweep and its jobs; returns which job ids are ready to enqueue.

    Set-based (a query per 1,000 jobs, batched inserts), so a 10,000-job sweep records in seconds.
    """
    sweep = session.exec(select(Sweep).where(Sweep.spec_hash == spec_hash)).first()
    report = SubmitReport(
        sweep=sweep or Sweep(name=name, seed=seed, spec=spec, spec_hash=spec_hash), sweep_existed=bool(sweep)
    )
    if overlap is not None:  # measured at this submit: the data files may have changed since the last
        report.sweep.overlap = overlap
    session.add(report.sweep)
    session.flush()
    existing = _jobs_by_hash(session, [draft.spec_hash for draft in drafts])
    jobs_by_hash: dict[str, Job] = {}
    for draft in drafts:
        known = jobs_by_hash.get(draft.spec_hash) or existing.get(draft.spec_hash)
        jobs_by_hash[draft.spec_hash] = _upsert_job(session, draft, known, max_attempts=max_attempts, report=report)
    session.flush()
    _link_all(session, report.sweep.id, drafts, jobs_by_hash)
    pending = [job for job in jobs_by_hash.values() if job.state == JobState.pending]
    blocked = _jobs_with_unfinished_dependencies(session, [job.id for job in pending])
    for job in pending:
        if job.id not in blocked:
            transition(job, JobState.queued)
            report.to_enqueue.append(job.id)
    return report


def _chunks(items: list[T], size: int = 1000) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _jobs_by_hash(session: Session, hashes: list[str]) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for chunk in _chunks(sorted(set(hashes))):
        found.update({job.spec_hash: job for job in session.exec(select(Job).where(col(Job.spec_hash).in_(chunk)))})
    return found


def _link_all(session: Session, sweep_id: str, drafts: list[JobDraft], jobs_by_hash: dict[str, Job]) -> None:
    members = set(session.exec(select(SweepJob.job_id).where(SweepJob.sweep_id == sweep_id)).all())
    job_ids = [job.id for job in jobs_by_hash.values()]
    edges: set[tuple[str, str]] = set()
    for chunk in _chunks(job_ids):
        query = select(JobDependency.job_id, JobDependency.depends_on_id).where(col(JobDependency.job_id).in_(chunk))
        edges.update(session.exec(query).all())
    for position, draft in enumerate(drafts):
        job = jobs_by_hash[draft.spec_hash]
        if job.id not in members:
            members.add(job.id)
            session.add(SweepJob(sweep_id=sweep_id, job_id=job.id, position=position))
        for dependency in draft.depends_on:
            edge = (job.id, jobs_by_hash[dependency].id)
            if edge not in edges:
                edges.add(edge)
                session.add(JobDependency(job_id=edge[0], depends_on_id=edge[1]))
    session.flush()


def _jobs_with_unfinished_dependencies(session: Session, job_ids: list[str]) -> set[str]:
    blocked: set[str] = set()
    for chunk in _chunks(job_ids):
        blocked.update(
            session.exec(
                select(JobDependency.job_id)
                .join(Job, col(JobDependency.depends_on_id) == col(Job.id))
                .where(col(JobDependency.job_id).in_(chunk), Job.state != JobState.succeeded)
            ).all()
        )
    return blocked


def _upsert_job(session: Session, draft: JobDraft, job: Job | None, *, max_attempts: int, report: SubmitReport) -> Job:
    if job is None:
        job = Job(
            kind=draft.kind, label=draft.label, spec=draft.spec, spec_hash=draft.spec_hash, max_attempts=max_attempts,
            vram_mb=draft.vram_mb, queue=draft.queue,
        )
        session.add(job)
        report.new_jobs += 1
    elif job.state == JobState.succeeded:
        report.already_succeeded += 1
    elif job.state in (JobState.failed, JobState.cancelled):
        # Resubmitting is how a user retries what failed: give it a fresh set of attempts.
        transition(job, JobState.pending)
        job.attempts = 0
        job.max_attempts = max_attempts
        report.retried += 1
    else:
        report.in_progress += 1
    return job


def _dependencies_succeeded(session: Session, job_id: str) -> bool:
    states = session.exec(
        select(Job.state)
        .join(JobDependency, col(JobDependency.depends_on_id) == col(Job.id))
        .where(JobDependency.job_id == job_id)
    ).all()
    return all(state == JobState.succeeded for state in states)


# --------------------------------------------------------------------------- run


def claim(session: Session, *, job_id: str, worker: str, stale_after_s: float) -> Job | None:
    """Take a job to run it. None when it is not runnable (done, cancelled, or alive elsewhere)."""
    fast = _claim_queued(session, job_id=job_id, worker=worker)
    if fast is not None:
        return fast
    job: Job | None = session.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None or job.state in TERMINAL or job.state == JobState.pending:
        return None
    if job.state == JobState.running:
        beat = job.heartbeat_at
        if beat is not None and _aware(beat) > now() - timedelta(seconds=stale_after_s):
            return None  # a re-delivered message while the first attempt is still alive
        transition(job, JobState.queued)  # its worker died: take the job over
    if job.attempts >= job.max_attempts:
        fail(session, job=job, error=f"gave up after {job.attempts} attempts; last error: {job.error or 'worker lost'}")
        return None
    transition(job, JobState.running)
    job.attempts += 1
    job.worker = worker
    session.flush()
    return job


def claim_queued_statement(*, job_id: str, worker: str, returning: tuple[Any, ...] = ()) -> ReturningUpdate[Any]:
    """queued (attempts left) -> running in one conditional UPDATE: transition()'s move and stamps.

    It needs no row lock: of two concurrent claimers exactly one matches the WHERE.
    """
    values = moved(JobState.queued, JobState.running, job_id=job_id)
    return (
        update(Job)
        .where(col(Job.id) == job_id, col(Job.state) == JobState.queued, col(Job.attempts) < col(Job.max_attempts))
        .values(**values, attempts=col(Job.attempts) + 1, worker=worker)
        .returning(*(returning or (Job,)))
    )


def _claim_queued(session: Session, *, job_id: str, worker: str) -> Job | None:
    """The common case; everything else (stale takeover, spent attempts, missing rows) takes claim()'s locked path."""
    statement = claim_queued_statement(job_id=job_id, worker=worker).execution_options(synchronize_session=False)
    job: Job | None = session.exec(statement).scalars().first()  # RETURNING the whole row: a Job
    return job


def succeed_running_statement(*, job_id: str, artifact_uri: str | None = None) -> ReturningUpdate[str, bool]:
    """running -> succeeded (transition()'s move and stamp); RETURNING (id, has dependants): most jobs are
    leaves and skip the dependants query."""
    values = moved(JobState.running, JobState.succeeded, job_id=job_id)
    if artifact_uri:
        values["artifact_uri"] = artifact_uri
    has_dependants = exists().where(col(JobDependency.depends_on_id) == col(Job.id))
    return (
        update(Job).where(col(Job.id) == job_id, col(Job.state) == JobState.running).values(**values)
        .returning(col(Job.id), has_dependants)
    )


def queue_ready_dependants(session: Session, *, job_id: str) -> list[str]:
    ready = []
    for dependant in _dependants(session, job_id):
        if dependant.state == JobState.pending and _dependencies_succeeded(session, dependant.id):
            transition(dependant, JobState.queued)
            ready.append(dependant.id)
    return ready


def succeed_running(session: Session, *, job_id: str, artifact_uri: str | None = None) -> list[str] | None:
    """running -> succeeded in one statement, then queue the dependants now ready.

    None when the job is no longer running (cancelled, or taken over): the caller writes nothing.
    """
    row = session.exec(succeed_running_statement(job_id=job_id, artifact_uri=artifact_uri)).first()
    if row is None:
        return None
    return queue_ready_dependants(session, job_id=job_id) if row[1] else []


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns.
    return moment if moment.tzinfo else moment.replace(tzinfo=now().tzinfo)


def heartbeat(session: Session, *, job_id: str, done: int, total: int) -> str:
    """Record progress and liveness; returns the job's current state so the caller can stop if cancelled."""
    job = session.get(Job, job_id)
    if job is None:
        return JobState.cancelled
    job.heartbeat_at = now()
    job.progress_done, job.progress_total = done, total
    return job.state


def fail(session: Session, *, job: Job, error: str) -> None:
    """Mark failure and cancel everything downstream, saying why."""
    transition(job, JobState.failed, error=error)
    _cancel_dependants(session, job, reason=f"dependency {job.label} ({job.id}) failed")


def requeue(session: Session, *, job: Job, error: str) -> None:
    """Hand a running job back for another attempt (retryable error, worker shutting down)."""
    transition(job, JobState.queued, error=None)
    job.error = error


def _cancel_dependants(session: Session, job: Job, *, reason: str) -> None:
    for dependant in _dependants(session, job.id):
        if dependant.state in (JobState.pending, JobState.queued):
            transition(dependant, JobState.cancelled, error=reason)
            _cancel_dependants(session, dependant, reason=reason)


def _dependants(session: Session, job_id: str) -> list[Job]:
    query = (
        select(Job)
        .join(JobDependency, col(JobDependency.job_id) == col(Job.id))
        .where(JobDependency.depends_on_id == job_id)
    )
    return list(session.exec(query).all())


def cancel_sweep(session: Session, *, sweep_id: str) -> list[str]:
    """Cancel every unfinished job of the sweep; running ones stop at their next heartbeat."""
    cancelled = []
    for job in sweep_jobs(session, sweep_id=sweep_id):
        if job.state not in TERMINAL:
            transition(job, JobState.cancelled, error="cancelled by user")
            cancelled.append(job.id)
    return cancelled


# --------------------------------------------------------------------------- results


def insert_eval_result(session: Session, *, result: EvalResult, predictions: list[Prediction]) -> bool:
    """Write a result once. False when this job already has one (a re-delivered message)."""
    if session.exec(select(EvalResult.id).where(EvalResult.job_id == result.job_id)).first() is not None:
        return False
    try:
        with session.begin_nested():
            session.add(result)
            session.add_all(predictions)
            session.flush()
    except IntegrityError:
        return False  # a concurrent attempt won the race; its rows stand
    return True


# --------------------------------------------------------------------------- queries


def find_sweep(session: Session, *, sweep_ref: str) -> Sweep | None:
    """By id, or by name (the newest sweep of that name)."""
    sweep = session.get(Sweep, sweep_ref)
    if sweep is not None:
        return sweep
    newest: Sweep | None = session.exec(
        select(Sweep).where(Sweep.name == sweep_ref).order_by(col(Sweep.created_at).desc())
    ).first()
    return newest


def latest_sweep(session: Session) -> Sweep | None:
    return session.exec(select(Sweep).order_by(col(Sweep.created_at).desc())).first()


def sweep_jobs(session: Session, *, sweep_id: str) -> list[Job]:
    query = (
        select(Job)
        .join(SweepJob, col(SweepJob.job_id) == col(Job.id))
        .where(SweepJob.sweep_id == sweep_id)
        .order_by(col(SweepJob.position))
    )
    return list(session.exec(query).all())


def job_dependencies(session: Session, *, job_id: str) -> list[Job]:
    query = (
        select(Job)
        .join(JobDependency, col(JobDependency.depends_on_id) == col(Job.id))
        .where(JobDependency.job_id == job_id)
    )
    return list(session.exec(query).all())


def queued_job_ids(session: Session, *, sweep_id: str | None = None) -> list[str]:
    query = select(Job.id).where(Job.state == JobState.queued)
    if sweep_id:
        query = query.join(SweepJob, col(SweepJob.job_id) == col(Job.id)).where(SweepJob.sweep_id == sweep_id)
    return list(session.exec(query).all())


def insert_train_result(session: Session, *, result: TrainResult) -> None:
    """Record a train job's outcome once; a re-delivered job finds it there and adds nothing."""
    if session.exec(select(TrainResult).where(TrainResult.job_id == result.job_id)).first() is None:
        session.add(result)


def insert_audit_result(session: Session, *, result: AuditResult) -> None:
    """Record an audit once; a re-delivered job finds it there and adds nothing."""
    if session.exec(select(AuditResult).where(AuditResult.job_id == result.job_id)).first() is None:
        session.add(result)
