"""`orchestrator reconcile` against the real Postgres and Redis (no worker: the test plays the dead one)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import redis

from db.broker import DEFAULT_QUEUE, job_ids_in_broker
from db.models import Job
from db.session import session_scope
from db.states import JobState, now, transition
from tests.fleet_helpers import noop_drafts, record

REPO = Path(__file__).resolve().parents[1]


def reconcile(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "reconcile", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def test_reconcile_republishes_vanished_messages_and_requeues_or_fails_lost_jobs(service_env, redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete(DEFAULT_QUEUE)
    _cancel_leftovers()  # earlier tests of this session may have left queued or running jobs
    # Given three queued jobs whose messages never reached Redis (or Redis was flushed)...
    _, queued = record("reconcile-queued", noop_drafts(3, tag="rq"))
    # ...and two running jobs whose worker stopped heart-beating, one with attempts left, one without
    _, (alive_retry, spent) = record("reconcile-lost", noop_drafts(2, tag="rl"), max_attempts=2)
    with session_scope() as session:
        for job_id, attempts in ((alive_retry, 1), (spent, 2)):
            job = session.get(Job, job_id)
            transition(job, JobState.running)
            job.attempts, job.worker, job.heartbeat_at = attempts, "ghost@pc", now() - timedelta(minutes=10)

    # When the reconciler runs
    out = reconcile(service_env, "--grace", "0", "--lost-after", "60")

    # Then the lost job with attempts left and the three queued ones are published again, once each
    assert "1 lost job(s) requeued, 1 lost job(s) failed, 3 queued job(s) re-published" in out
    assert job_ids_in_broker(client, [DEFAULT_QUEUE]) == {*queued, alive_retry}
    assert client.llen(DEFAULT_QUEUE) == 4
    with session_scope() as session:
        retried, failed = session.get(Job, alive_retry), session.get(Job, spent)
        assert retried.state == "queued" and "lost: worker ghost@pc stopped heart-beating" in retried.error
        assert failed.state == "failed" and "gave up after 2 attempts" in failed.error

    # And a second pass finds nothing to do: idempotent
    assert "0 lost job(s) requeued, 0 lost job(s) failed, 0 queued job(s) re-published" in reconcile(service_env, "--grace", "0")
    assert client.llen(DEFAULT_QUEUE) == 4
    client.delete(DEFAULT_QUEUE)


def test_reconcile_without_a_broker_is_a_usage_error(postgres_url) -> None:
    import os

    env = {**os.environ, "REASONFLEET_DATABASE_URL": postgres_url}
    env.pop("REASONFLEET_BROKER_URL", None)
    result = subprocess.run([sys.executable, "-m", "orchestrator.cli", "reconcile"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "REASONFLEET_BROKER_URL" in result.stderr and "Traceback" not in result.stderr


def _cancel_leftovers() -> None:
    from sqlmodel import col, select

    with session_scope() as session:
        for job in session.exec(select(Job).where(col(Job.state).in_(["queued", "running"]))).all():
            transition(job, JobState.cancelled, error="cancelled by test setup")
