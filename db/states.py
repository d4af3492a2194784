"""Job states and the one place that moves a job between them.

`transition` changes an ORM row; `moved` gives the column values of the same move for
the one-statement fast paths (claim, succeed) in `db.crud`. Both check the move against
`LEGAL`, so no code path changes a job's state any other way.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Protocol

from jobs.errors import IllegalTransition


class JobState(str, Enum):
    pending = "pending"  # waiting on dependencies
    queued = "queued"  # handed to the executor (a Celery message or the in-process queue)
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    def __str__(self) -> str:
        return self.value


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


class Stateful(Protocol):
    """What the state machine needs of a job row (db.models.Job)."""

    id: str
    state: JobState
    error: str | None
    queued_at: datetime | None
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None


def now() -> datetime:
    return datetime.now(timezone.utc)


def moved(current: JobState, to: JobState, *, job_id: str = "?") -> dict[str, Any]:
    """The columns a legal move `current -> to` sets (state and its timestamp); IllegalTransition otherwise."""
    if to not in LEGAL[current]:
        raise IllegalTransition(f"job {job_id}: {current.value} -> {to.value} is not allowed")
    stamp = now()
    values: dict[str, Any] = {"state": to}
    if to is JobState.queued:
        values.update(queued_at=stamp, error=None)
    elif to is JobState.running:
        values.update(started_at=stamp, heartbeat_at=stamp)
    elif to in TERMINAL:
        values["finished_at"] = stamp
    return values


def transition(job: Stateful, to: JobState, *, error: str | None = None) -> None:
    """Move `job` to `to`, stamping the matching timestamp; refuse illegal moves."""
    for column, value in moved(JobState(job.state), to, job_id=job.id).items():
        setattr(job, column, value)
    if error is not None:
        job.error = error
