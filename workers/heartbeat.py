"""The worker's background thread: registry heartbeat, job liveness, yield policy, periodic reconcile.

It runs in the Celery parent process, which never does CUDA work (prefork children do), so a
long GPU kernel never delays a heartbeat. Started by `worker_ready`, stopped by `worker_shutdown`.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from db import fleet
from db.models import Worker
from db.session import session_scope
from db.settings import Settings
from workers.db_retry import with_db_retry
from workers.gpu import GpuInfo
from workers.yield_policy import GpuProbe, GpuSample, YieldPolicy

log = logging.getLogger(__name__)
VERSION = "0.1.0"


@dataclass
class FleetConfig:
    """What `workers start` decided; the thread does the rest (its periods come from `settings`)."""

    settings: Settings
    gpu: GpuInfo | None
    memory_class: str
    queues: list[str]
    policy: YieldPolicy | None = None
    probe: GpuProbe | None = None
    name: str = ""
    stop: threading.Event = field(default_factory=threading.Event)


def install(config: FleetConfig) -> None:
    """Connect the signals for this worker process (called by `workers start` before the worker runs)."""

    def on_ready(sender: Any, **_: object) -> None:
        config.name = sender.hostname
        with_db_retry(lambda: _register(config))
        threading.Thread(target=_loop, args=(config, sender.app), name="reasonfleet-heartbeat", daemon=True).start()

    parent = os.getpid()

    def on_shutdown(**_: object) -> None:
        # Warm shutdown sends worker_shutdown; a cold/soft one (SIGTERM remapped, 2nd Ctrl-C) only exits
        # the interpreter, hence atexit too. Pool children leave with os._exit and never run this.
        if os.getpid() != parent or config.stop.is_set():
            return
        config.stop.set()
        if config.name:
            _hand_back_running(config, reason="worker shut down (SIGTERM/Ctrl-C)")

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    atexit.register(on_shutdown)


def _register(config: FleetConfig) -> None:
    gpu = config.gpu
    row = Worker(
        name=config.name, host=socket.gethostname(), pid=os.getpid(), gpu_name=gpu.name if gpu else None,
        vram_total_mb=gpu.total_mb if gpu else 0, vram_free_mb=gpu.free_mb if gpu else 0,
        driver=gpu.driver if gpu else None,
        version=VERSION, memory_class=config.memory_class, queues=",".join(config.queues),
    )
    with session_scope() as session:
        fleet.register(session, worker=row)
    log.info("registered %s (%s, queues %s)", config.name, gpu.name if gpu else "CPU only", ",".join(config.queues))


def _loop(config: FleetConfig, worker_app: Celery) -> None:
    from db.broker import make_app

    # A separate app (its own connections) for publishing: the consumer's are not ours to share.
    publisher = make_app(config.settings)
    every_s, reconcile_every_s = config.settings.heartbeat_s, config.settings.reconcile_every_s
    next_reconcile = time.monotonic() + reconcile_every_s
    while not config.stop.is_set():
        try:
            _tick(config, worker_app)
            if reconcile_every_s > 0 and time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + reconcile_every_s
                _reconcile(config, publisher)
        except Exception as error:  # noqa: BLE001  (the heartbeat must outlive any one failure)
            first_line = str(error).splitlines()[0][:200] if str(error) else ""
            log.warning("heartbeat: %s: %s", type(error).__name__, first_line)
        config.stop.wait(every_s)


def running_job_ids() -> list[str]:
    from celery.worker import state

    return [str(request.args[0]) for request in list(state.active_requests) if request.args]


def _tick(config: FleetConfig, worker_app: Celery) -> None:
    free = _free_vram_mb() if config.gpu is not None else None
    with session_scope() as session:
        fleet.beat(session, name=config.name, running=running_job_ids(), vram_free_mb=free)
    if config.policy is not None:
        sample = config.probe() if config.probe else GpuSample()
        _apply_policy(config, worker_app, config.policy.decide(sample, datetime.now()).reason)


def _free_vram_mb() -> int | None:
    from workers.gpu import (
        probe_gpus,  # NVML only: never initialises CUDA in this parent process
    )

    gpus = probe_gpus()
    return gpus[0].free_mb if gpus else None


def _apply_policy(config: FleetConfig, worker_app: Celery, reason: str | None) -> None:
    with session_scope() as session:
        was = fleet.yield_request(session, name=config.name)
        fleet.set_paused(session, name=config.name, reason=reason)
    if bool(was) == bool(reason):
        return
    # Through the broker's control channel: the consumer applies it in its own loop, thread-safely.
    for queue in config.queues:
        if reason:
            worker_app.control.cancel_consumer(queue, destination=[config.name])
        else:
            worker_app.control.add_consumer(queue, destination=[config.name])
    log.warning("%s: %s", config.name, f"paused: {reason}" if reason else "resumed taking jobs")


def _reconcile(config: FleetConfig, publisher: Celery) -> None:
    from db.reconcile import reconcile

    settings = config.settings
    reconcile(
        publisher, settings.broker_url or "", lost_after_s=settings.lost_after_s, grace_s=settings.reconcile_grace_s
    )


def _hand_back_running(config: FleetConfig, *, reason: str) -> None:
    """On shutdown: jobs still running here go back to the queue at once (no waiting for a stale heartbeat)."""
    from sqlmodel import select

    from db.broker import enqueue_jobs, make_app
    from db.models import Job
    from db.states import JobState

    with session_scope() as session:
        jobs = session.exec(select(Job.id).where(Job.worker == config.name, Job.state == JobState.running)).all()
        handed = [job_id for job_id in jobs if fleet.requeue_for_yield(session, job_id=job_id, reason=reason)]
        fleet.mark_stopped(session, name=config.name)
    if handed:
        enqueue_jobs(make_app(config.settings), handed)
        log.warning("%s: handed back %d running job(s)", config.name, len(handed))
