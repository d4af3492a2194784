"""Nothing lost: a sweep survives kill -9 of workers mid-job and a Redis restart mid-sweep.

Uses its own redis-server on a free port in a temp dir (never the machine's 6379), without
persistence, so the restart loses every message: only Postgres remembers the work.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from sqlmodel import col, func, select

from db.broker import enqueue_jobs, make_app
from db.models import EvalResult, Job, Prediction
from db.session import session_scope
from db.settings import Settings
from tests.fleet_helpers import (
    Pace,
    job_states,
    kill_tree,
    record,
    sweep_done,
    tiny_eval_drafts,
    wait_until,
)
from tests.model_fixtures import require

pytestmark = pytest.mark.slow
JOBS = 12
QUESTIONS = 12
WORKERS = 3
# A job on a cold worker (import torch and transformers, load the model) costs about as much as
# four worker starts (measured 3.3x idle, 4.1x beside two busy loops): the bound before one is timed.
COLD_JOB_IN_STARTS = 4


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port(6390)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 30, f"the chaos redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the chaos redis-server exited ({self.process.returncode}): is port {self.port} taken?")
        return _ping(self.url)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _free_port(start: int) -> int:
    for port in range(start, start + 100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port for the chaos redis-server")


def _runs_a_job(worker) -> bool:  # type: ignore[no-untyped-def]
    with session_scope() as session:
        names = session.exec(select(Job.worker).where(Job.state == "running")).all()
    return any(name and name.startswith(worker.name.split("@")[0] + "@") for name in names)


def _succeeded(job_ids: list[str]) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Job).where(col(Job.id).in_(job_ids), Job.state == "succeeded")).one()


def _start(start_worker, env: dict[str, str], pace: Pace):  # type: ignore[no-untyped-def]
    with pace.timing("starting a worker"):
        return start_worker(env)


def _first_three_jobs(pace: Pace, job_ids: list[str], enqueued: float) -> None:
    """Time the first job (a cold worker's), then allow for three; their bounds scale with the machine's pace."""
    states = lambda: job_states(job_ids)  # noqa: E731
    # The workers warm up at once, sharing the cores.
    pace.wait(lambda: _succeeded(job_ids) >= 1, "the first job to succeed", steps=COLD_JOB_IN_STARTS * WORKERS, detail=states)
    pace.measure("enqueue to the first job done (a cold worker)", time.monotonic() - enqueued)
    pace.wait(lambda: _succeeded(job_ids) >= 3, "three jobs done before the Redis restart", steps=3, detail=states)


def test_chaos_every_job_succeeds_exactly_once(tmp_path, tiny_model, start_worker, service_env) -> None:
    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    started = time.monotonic()
    server = RedisServer(tmp_path)
    server.start()
    env = {
        "REASONFLEET_BROKER_URL": server.url, "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_HEARTBEAT_S": "0.5",
        "REASONFLEET_RECONCILE_EVERY_S": "2", "REASONFLEET_LOST_AFTER_S": "4", "REASONFLEET_RECONCILE_GRACE_S": "3",
    }
    app = make_app(Settings(broker_url=server.url, database_url=service_env["REASONFLEET_DATABASE_URL"]))
    rng = random.Random(5)
    kills = 0
    pace = Pace()
    try:
        workers = [_start(start_worker, env, pace) for _ in range(WORKERS)]
        sweep_id, job_ids = record("chaos", tiny_eval_drafts(str(tiny_model.path), JOBS, n=QUESTIONS, max_new_tokens=48, tag="chaos"), max_attempts=6)
        assert len(job_ids) == JOBS
        enqueue_jobs(app, job_ids)
        enqueued = time.monotonic()

        # kill -9 a random worker that is running a job, twice, with a Redis restart in between
        for round_ in range(2):
            busy = pace.wait(
                lambda: [w for w in workers if w.process.poll() is None and _runs_a_job(w)] or (sweep_done(sweep_id) and "done"),
                "a worker running a job", detail=lambda: job_states(job_ids),
            )
            if busy == "done":
                break  # warm workers finished the sweep before a second kill: the first one still counts
            kill_tree(rng.choice(busy).process.pid)
            kills += 1
            workers.append(_start(start_worker, env, pace))
            if round_ == 0:
                _first_three_jobs(pace, job_ids, enqueued)
                server.stop()
                time.sleep(rng.uniform(0.5, 1.5))  # how long Redis is away, not a wait for anything
                server.start()
        # The rest, a few jobs per worker, each at most a cold worker's first job; plus the reconciler's re-sends.
        jobs = pace.wait(lambda: sweep_done(sweep_id), "every job to end", steps=JOBS / WORKERS, detail=lambda: job_states(job_ids))
    finally:
        server.stop()

    with session_scope() as session:
        results = session.exec(select(EvalResult.job_id, func.count()).where(col(EvalResult.job_id).in_(job_ids)).group_by(EvalResult.job_id)).all()
        predictions = session.exec(select(func.count()).select_from(Prediction).where(col(Prediction.job_id).in_(job_ids))).one()
    states = [job.state for job in jobs]
    reconciled = sum(w.output().count("reconcile:") for w in workers)
    attempts = sum(job.attempts for job in jobs)
    print(
        f"\nchaos: {len(jobs)} jobs, {states.count('succeeded')} succeeded, {states.count('failed')} failed, "
        f"{len(results)} result rows, {predictions} predictions, {attempts} attempts, {kills} workers killed -9, "
        f"1 Redis restart, {reconciled} reconcile passes that changed something, {time.monotonic() - started:.0f} s; measured: {', '.join(pace.measured)}"
    )
    assert states == ["succeeded"] * JOBS, [(j.label, j.state, j.error) for j in jobs]
    assert sorted(job_id for job_id, _ in results) == sorted(job_ids)  # none lost
    assert all(count == 1 for _, count in results)  # none duplicated
    assert predictions == JOBS * QUESTIONS
    assert kills >= 1 and attempts >= JOBS + 1  # at least one job was really interrupted and re-run
