"""The one Celery app. JSON only; messages carry a job id and nothing else."""

from __future__ import annotations

from celery import Celery

from db.settings import Settings, get_settings

TASK_RUN_JOB = "reasonfleet.run_job"
DEFAULT_QUEUE = "reasonfleet"


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
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app()


def enqueue(app: Celery, job_id: str) -> None:
    """Publish one job. The message is the id alone; the worker reads the spec from the database."""
    app.send_task(TASK_RUN_JOB, args=[job_id], queue=DEFAULT_QUEUE)
