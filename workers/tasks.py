"""Celery tasks: thin wrappers that hand a job id to the runner and enqueue what became ready."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from celery.exceptions import Reject

from db.broker import TASK_RUN_JOB, enqueue_jobs, run_job_argument
from workers.runner import execute_job

log = logging.getLogger(__name__)


# Shared: registered on every app that finalizes after this import (workers.celery_app.make_worker_app).
@shared_task(name=TASK_RUN_JOB, bind=True)  # type: ignore[untyped-decorator]  # celery ships no type hints
def run_job(self: Task, *args: object, **kwargs: object) -> str:
    try:
        job_id = run_job_argument(args, kwargs)
    except ValueError as error:
        # Refused and dropped, never run; the job it may name is left alone (a forged message must not be able
        # to fail someone's job): still queued without a message, so reconcile re-publishes a well-formed one.
        log.error("refused a malformed %s message %s: %s", TASK_RUN_JOB, self.request.id, error)
        raise Reject(f"malformed message: {error}", requeue=False) from None
    report = execute_job(job_id, worker=self.request.hostname)
    enqueue_jobs(self.app, report.ready)  # the app this worker runs, with the settings it was started with
    return report.state
