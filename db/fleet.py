"""The worker registry and the reconciler's database half. Session first, never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import Session, col, select

from db import crud
from db.models import Job, Worker
from db.states import JobState, now

# Worker row states written by workers; "gone" is derived from an old heartbeat, never stored.
IDLE, BUSY, PAUSED, STOPPED, GONE = "idle", "busy", "paused", "stopped", "gone"


def register(session: Session, *, worker: Worker) -> Worker:
    """Insert or refresh the row of a (re)starting worker."""
    existing = session.get(Worker, worker.name)
    if existing is None:
        session.add(worker)
        return worker
    refreshed = (
        "host", "pid", "gpu_name", "vram_total_mb", "vram_free_mb", "driver", "version", "memory_class", "queues",
    )
    for field in refreshed:
        setattr(existing, field, getattr(worker, field))
    existing.state, existing.current_job, existing.pause_reason = IDLE, None, None
    existing.started_at = existing.heartbeat_at = now()
    return existing


def beat(session: Session, *, name: str, running: list[str], vram_free_mb: int | None = None) -> Worker | None:
    """Liveness of the worker and of the jobs it runs (written from the parent, never from CUDA work)."""
    row = session.get(Worker, name)
    if row is None:
        return None
    stamp = now()
    row.heartbeat_at = stamp
    row.current_job = running[0] if running else None
    if row.state != PAUSED:
        row.state = BUSY if running else IDLE
    if vram_free_mb is not None:
        row.vram_free_mb = vram_free_mb
    if running:
        mine = select(Job).where(col(Job.id).in_(running), Job.state == JobState.running, Job.worker == name)
        for job in session.exec(mine):
            job.heartbeat_at = stamp
    return row


def set_paused(session: Session, *, name: str, reason: str | None) -> None:
    row = session.get(Worker, name)
    if row is None:
        return
    row.state = PAUSED if reason else (BUSY if row.current_job else IDLE)
    row.pause_reason = reason


def mark_stopped(session: Session, *, name: str) -> None:
    row = session.get(Worker, name)
    if row is not None:
        row.state, row.current_job = STOPPED, None


def yield_request(session: Session, *, name: str) -> str | None:
    """The pause reason when the worker's owner wants the GPU back, else None."""
    row = session.get(Worker, name)
    return row.pause_reason if row is not None and row.state == PAUSED else None


def display_state(row: Worker, *, gone_after_s: float, at: datetime | None = None) -> str:
    if row.state == STOPPED:
        return STOPPED
    if crud._aware(row.heartbeat_at) < (at or now()) - timedelta(seconds=gone_after_s):
        return GONE
    return row.state


def list_workers(session: Session) -> list[Worker]:
    return list(session.exec(select(Worker).order_by(col(Worker.name))).all())


# --------------------------------------------------------------------------- reconcile


@dataclass
class LostReport:
    requeued: list[str]
    failed: list[str]


def handle_lost_jobs(session: Session, *, stale_after_s: float) -> LostReport:
    """Running jobs whose heartbeat stopped: back to the queue, or failed once their attempts are spent."""
    cutoff = now() - timedelta(seconds=stale_after_s)
    query = select(Job).where(Job.state == JobState.running, col(Job.heartbeat_at) < cutoff)
    report = LostReport([], [])
    for job in session.exec(query.with_for_update(skip_locked=True)).all():
        reason = f"lost: worker {job.worker} stopped heart-beating (last {crud._aware(job.heartbeat_at):%H:%M:%S} UTC)"
        if job.attempts >= job.max_attempts:
            crud.fail(session, job=job, error=f"{reason}; gave up after {job.attempts} attempts")
            report.failed.append(job.id)
        else:
            crud.requeue(session, job=job, error=reason)
            report.requeued.append(job.id)
    return report


def queued_without_message(session: Session, *, in_broker: set[str], older_than_s: float) -> list[str]:
    """Queued jobs (with a routable queue) whose message is neither waiting nor being delivered."""
    cutoff = now() - timedelta(seconds=older_than_s)
    # No queue but an estimate: too big for every class, so no message is expected.
    routable = or_(col(Job.queue).is_not(None), col(Job.vram_mb).is_(None))
    query = select(Job.id).where(Job.state == JobState.queued, col(Job.queued_at) < cutoff, routable)
    return [job_id for job_id in session.exec(query).all() if job_id not in in_broker]


def requeue_for_yield(session: Session, *, job_id: str, reason: str) -> bool:
    """Hand a running job back because its GPU's owner needs it; this attempt does not count."""
    job = session.get(Job, job_id)
    if job is None or job.state != JobState.running:
        return False
    crud.requeue(session, job=job, error=reason)
    job.attempts = max(0, job.attempts - 1)
    return True
