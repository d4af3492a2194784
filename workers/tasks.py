"""Celery tasks: thin wrappers that hand a job id to the runner and enqueue what became ready."""

from __future__ import annotations

from celery import Task

from db.broker import TASK_RUN_JOB, enqueue_jobs
from workers.celery_app import app
from workers.runner import execute_job


@app.task(name=TASK_RUN_JOB, bind=True)  # type: ignore[untyped-decorator]  # celery ships no type hints
def run_job(self: Task, job_id: str) -> str:
    report = execute_job(job_id, worker=self.request.hostname)
    enqueue_jobs(self.app, report.ready)  # the app this worker runs, with the settings it was started with
    return report.state
