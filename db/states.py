"""Job states and the one function allowed to move a job between them."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from db.models import Job


class JobState(str, Enum):
    pending = "pending"  # waiting on dependencies
    queued = "queued"  # handed to the executor (a Celery message or the in-process queue)
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})

LEGAL: dict[JobState, frozenset[JobState]] = {
    JobState.pending: frozenset({JobState.queued, JobState.cancelled}),
    # queued -> failed: a job that exhausted its attempts is failed when next claimed.
    JobState.queued: frozenset({JobState.running, JobState.cancelled, JobState.failed}),
    # running -> queued: a retryable failure or a lost worker hands the job back.
    JobState.running: frozenset({JobState.succeeded, JobState.failed, JobState.queued, JobState.cancelled}),
    JobState.succeeded: frozenset(),
    # failed/cancelled -> pending|queued: resubmitting a sweep retries what did not succeed.
    JobState.failed: frozenset({JobState.queued, JobState.pending}),
    JobState.cancelled: frozenset({JobState.queued, JobState.pending}),
}


class IllegalTransition(RuntimeError):
    """A state change the state machine does not allow."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def transition(job: "Job", to: JobState, *, error: str | None = None) -> None:
    """Move `job` to `to`, stamping the matching timestamp; refuse illegal moves."""
    current = JobState(job.state)
    if to not in LEGAL[current]:
        raise IllegalTransition(f"job {job.id}: {current.value} -> {to.value} is not allowed")
    job.state = to.value
    stamp = now()
    if to is JobState.queued:
        job.queued_at = stamp
        job.error = None
    elif to is JobState.running:
        job.started_at = stamp
        job.heartbeat_at = stamp
    elif to in TERMINAL:
        job.finished_at = stamp
    if error is not None:
        job.error = error
