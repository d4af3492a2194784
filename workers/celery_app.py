"""The workers' Celery app: the broker contract's app (db.broker) with the tasks this package registers."""

from __future__ import annotations

from celery import Celery

from db.broker import make_app
from db.settings import Settings

TASK_MODULES = ("workers.tasks",)


def make_worker_app(settings: Settings | None = None) -> Celery:
    return make_app(settings, include=TASK_MODULES)


app = make_worker_app()
