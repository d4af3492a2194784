"""The reconciler: Postgres is the truth, Redis only carries messages; make Redis match.

- A running job whose heartbeat stopped (its worker was killed, lost power, lost the network)
  goes back to the queue, or is failed with the reason once its attempts are spent.
- A queued job with no message in Redis (Redis restarted or was flushed, a publish was lost)
  is published again. A duplicate message is harmless: `claim` lets only one attempt run.

Runs from `orchestrator reconcile` and periodically from every worker's heartbeat thread;
on Postgres an advisory lock keeps it to one reconciler at a time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis
from celery import Celery
from sqlalchemy import text
from sqlmodel import Session

from db import fleet
from db.broker import enqueue_jobs, job_ids_in_broker
from db.session import session_scope
from jobs.resources.placement import DEFAULT_QUEUE, GPU_CLASSES_GB, queue_name

log = logging.getLogger(__name__)
ADVISORY_LOCK = 0x5EA50F1EE7  # any constant; one reconciler at a time per database


@dataclass
class ReconcileReport:
    lost_requeued: list[str] = field(default_factory=list)
    lost_failed: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    skipped: bool = False  # another reconciler held the lock

    def summary(self) -> str:
        if self.skipped:
            return "another reconciler is running: nothing done"
        return (
            f"{len(self.lost_requeued)} lost job(s) requeued, {len(self.lost_failed)} lost job(s) failed, "
            f"{len(self.republished)} queued job(s) re-published"
        )


def all_queues() -> list[str]:
    return [DEFAULT_QUEUE] + [queue_name(gb) for gb in GPU_CLASSES_GB]


def reconcile(
    app: Celery, broker_url: str, *, lost_after_s: float, grace_s: float
) -> ReconcileReport:
    report = ReconcileReport()
    with session_scope() as session:
        if not _take_lock(session):
            return ReconcileReport(skipped=True)
        lost = fleet.handle_lost_jobs(session, stale_after_s=lost_after_s)
        report.lost_requeued, report.lost_failed = lost.requeued, lost.failed
        client = redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
        try:
            in_broker = job_ids_in_broker(client, all_queues(), delivered_since=time.time() - grace_s)
        finally:
            client.close()
        missing = fleet.queued_without_message(session, in_broker=in_broker, older_than_s=grace_s)
    report.republished = [job_id for job_id in missing if job_id not in report.lost_requeued]
    # Published after the commit: a worker taking the message must find the row queued.
    enqueue_jobs(app, report.lost_requeued + report.republished)
    if report.lost_requeued or report.lost_failed or report.republished:
        log.warning("reconcile: %s", report.summary())
    return report


def _take_lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True
    # Transaction-scoped: released at the commit above even if this process dies.
    locked = session.connection().execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    return bool(locked.scalar())
