"""The workers' Celery app: the broker contract's app (db.broker) with the tasks this package registers, and
nothing else: Celery's built-in tasks (`celery.accumulate`, `celery.map`, `celery.chain`, `celery.group`…)
are removed, so a message naming one is refused as an unregistered task (logged and discarded)."""

from __future__ import annotations

import importlib

from celery import Celery

from db.broker import REGISTERED_TASKS, make_app
from db.settings import Settings

TASK_MODULES = ("workers.tasks",)


def make_worker_app(settings: Settings | None = None) -> Celery:
    app = make_app(settings, include=TASK_MODULES)
    for module in TASK_MODULES:
        importlib.import_module(module)  # its shared tasks must exist before this app finalizes
    app.finalize(auto=True)  # registers ours and Celery's built-ins now, so the latter can be removed
    for name in [name for name in app.tasks if name not in REGISTERED_TASKS]:
        app.tasks.unregister(name)
    return app


app = make_worker_app()
