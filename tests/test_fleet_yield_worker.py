"""Yield to the owner on a real worker process.

NVML cannot run here (no NVIDIA driver), so the worker reads its GPU samples from the file
probe (REASONFLEET_GPU_PROBE=file:…); everything after the probe is the real path: the
heartbeat thread, cancel_consumer/add_consumer through Redis, the job's requeue.
"""

from __future__ import annotations

import json
import signal
import time

import pytest
from sqlmodel import select

from db.broker import enqueue_jobs, make_app
from db.models import Job, Worker
from db.session import session_scope
from tests.fleet_helpers import noop_drafts, record, wait_until

pytestmark = pytest.mark.slow


def job(job_id: str) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def worker_row(prefix: str) -> Worker | None:
    with session_scope() as session:
        return next((w for w in session.exec(select(Worker)).all() if w.name.startswith(prefix)), None)


def consumed_queues(app, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    replies = app.control.inspect(destination=[name], timeout=2).active_queues() or {}
    return [q["name"] for q in replies.get(name, [])]


def test_a_game_pauses_the_worker_within_10_s_requeues_the_job_and_idle_resumes(tmp_path, start_worker, service_env) -> None:
    gpu = tmp_path / "gpu.json"
    gpu.write_text(json.dumps({"utilization_pct": 3}))
    worker = start_worker({
        "REASONFLEET_GPU_PROBE": f"file:{gpu}", "REASONFLEET_HEARTBEAT_S": "0.5", "REASONFLEET_IDLE_RESUME_S": "2",
        "REASONFLEET_RECONCILE_EVERY_S": "0",
    })
    app = make_app()
    name = wait_until(lambda: worker_row("test0@"), 20, "registration").name
    assert consumed_queues(app, name) == ["reasonfleet"]

    # Given a running 8-second job
    _, (job_id,) = record("yield", noop_drafts(1, sleep_s=8, tag="yield"))
    enqueue_jobs(app, [job_id])
    wait_until(lambda: job(job_id).state == "running", 20, "the job to start")

    # When the owner starts a game
    gpu.write_text(json.dumps({"utilization_pct": 97, "foreign_processes": ["game.exe"]}))
    started = time.monotonic()
    wait_until(lambda: consumed_queues(app, name) == [], 10, "the worker to stop consuming")
    paused_after = time.monotonic() - started
    row = worker_row("test0@")
    assert row.state == "paused" and row.pause_reason == "GPU in use by game.exe"

    # Then the running job goes back to the queue (this attempt does not count) and stays there
    requeued = wait_until(lambda: job(job_id).state == "queued" and job(job_id), 10, "the job to be handed back")
    assert requeued.attempts == 0 and "yielded the GPU to its owner" in (requeued.error or "")
    time.sleep(2)
    assert job(job_id).state == "queued"

    # When the GPU has been idle for 2 s, the worker consumes again and the job finishes
    gpu.write_text(json.dumps({"utilization_pct": 0}))
    wait_until(lambda: consumed_queues(app, name) == ["reasonfleet"], 15, "the worker to resume")
    done = wait_until(lambda: job(job_id).state == "succeeded" and job(job_id), 40, "the job to succeed")
    assert done.attempts == 1, worker.output()
    print(f"\nyield: stopped consuming {paused_after:.1f} s after the game started")
    assert paused_after < 10


def test_sigterm_is_a_warm_shutdown_that_hands_the_running_job_back(start_worker, service_env) -> None:
    # The soft-shutdown grace (1 s) is shorter than the job (10 s): the job is handed back, not lost.
    worker = start_worker({"REASONFLEET_SOFT_SHUTDOWN_S": "1", "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    _, (job_id,) = record("sigterm", noop_drafts(1, sleep_s=10, tag="sigterm"))
    enqueue_jobs(make_app(), [job_id])
    wait_until(lambda: job(job_id).state == "running", 20, "the job to start")
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=30)
    handed_back = job(job_id)
    assert handed_back.state == "queued" and handed_back.attempts == 0, worker.output()
    assert worker_row(worker.name.split("%")[0]).state == "stopped"

    # and the next worker runs it to the end
    start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    assert wait_until(lambda: job(job_id).state == "succeeded", 40, "the job to succeed on the next worker")
