"""The one Celery app. JSON only; messages carry a job id and nothing else."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from urllib.parse import parse_qs, urlparse

from celery import Celery

from db.settings import Settings, get_settings, mask_url

TASK_RUN_JOB = "reasonfleet.run_job"
DEFAULT_QUEUE = "reasonfleet"
# On SIGTERM/Ctrl-C a running job gets this long to finish before it is handed back (Celery 5.5 soft shutdown).
DEFAULT_SOFT_SHUTDOWN_S = 30.0


class InsecureBrokerTLS(ValueError):
    """A rediss:// URL that turns certificate checks off without saying so on purpose."""


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("reasonfleet", broker=settings.broker_url or "memory://", include=["workers.tasks"])
    app.conf.update(
        # pickle would let anyone who can write to Redis run code on every worker.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Postgres holds results and state; Celery's result backend would be a second truth.
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        # Ack after the job, and give the message back if the worker process dies mid-job.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job at a time per process: a GPU job must not hold a second one hostage.
        worker_prefetch_multiplier=1,
        # Longer than any job, or Redis re-delivers a long job to a second worker while it runs.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # Task events cost every job a few Redis writes; Flower switches them on (enable_events)
        # while it runs, so they are off by default. No "sent" event: the worker's "received" suffices.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        # The owner's Ctrl-C / SIGTERM: running jobs get a grace period, then are handed back.
        worker_soft_shutdown_timeout=float(os.environ.get("REASONFLEET_SOFT_SHUTDOWN_S", DEFAULT_SOFT_SHUTDOWN_S)),
        worker_enable_soft_shutdown_on_idle=False,
    )
    tls = broker_tls(settings.broker_url)
    if tls is not None:
        app.conf.broker_use_ssl = tls
    return app


def broker_tls(url: str | None) -> dict | None:
    """TLS options for a rediss:// URL: certificates are checked unless the URL says otherwise on purpose.

    `ssl_cert_reqs=none` is refused unless REASONFLEET_ALLOW_INSECURE_TLS=1: copying CERT_NONE
    from an example must not silently turn off the server check.
    """
    if not url or not url.startswith("rediss://"):
        return None
    given = (parse_qs(urlparse(url).query).get("ssl_cert_reqs") or ["required"])[0].lower()
    levels = {"required": ssl.CERT_REQUIRED, "cert_required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
              "cert_optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE, "cert_none": ssl.CERT_NONE}
    if given not in levels:
        raise InsecureBrokerTLS(f"broker URL {mask_url(url)}: ssl_cert_reqs must be required, optional or none, got {given!r}")
    if levels[given] == ssl.CERT_NONE and os.environ.get("REASONFLEET_ALLOW_INSECURE_TLS") != "1":
        raise InsecureBrokerTLS(
            f"broker URL {mask_url(url)} disables certificate checks (ssl_cert_reqs={given}); "
            "set REASONFLEET_ALLOW_INSECURE_TLS=1 if you really mean it"
        )
    return {"ssl_cert_reqs": levels[given]}


app = make_app()


def enqueue(app: Celery, job_id: str, *, queue: str | None = None, meta: dict[str, str] | None = None) -> None:
    """Publish one job. The message is the id alone; the worker reads the spec from the database.

    `meta` (sweep, kind, run label) only shapes what Flower and the logs show (kwargsrepr):
    the task receives no kwargs, and nothing secret is ever in it.
    """
    app.send_task(
        TASK_RUN_JOB, args=[job_id], queue=queue or DEFAULT_QUEUE,
        argsrepr=repr([job_id]), kwargsrepr=repr(meta or {}),
        shadow=f"reasonfleet.{meta['kind']}" if meta and meta.get("kind") else None,
    )


def enqueue_jobs(app: Celery, job_ids: Iterable[str], *, database_url: str | None = None) -> int:
    """Publish jobs to their memory-class queues; jobs no class can hold stay queued without a message."""
    from sqlmodel import col, select

    from db.models import Job, Sweep, SweepJob
    from db.session import get_engine

    ids = list(job_ids)
    if not ids:
        return 0
    query = (
        select(Job.id, Job.kind, Job.label, Job.queue, Job.vram_mb, Sweep.name)
        .join(SweepJob, col(SweepJob.job_id) == col(Job.id), isouter=True)
        .join(Sweep, col(Sweep.id) == col(SweepJob.sweep_id), isouter=True)
        .where(col(Job.id).in_(ids))
    )
    with get_engine(database_url).connect() as connection:  # Core: a read, no ORM identity map needed
        rows = connection.execute(query).all()
    sent: set[str] = set()
    for job_id, kind, label, queue, vram_mb, sweep in rows:
        if job_id in sent:
            continue  # a job shared by two sweeps: one message
        if queue is None and vram_mb is not None:
            continue  # estimated, and larger than every class: `orchestrator status` says so
        enqueue(app, job_id, queue=queue, meta={"sweep": sweep or "", "kind": kind, "run": label})
        sent.add(job_id)
    return len(sent)

