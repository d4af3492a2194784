"""The distributed path for real: CLI → Postgres → Redis → a Celery worker process → results in Postgres.

Uses a tiny random model so the worker's job takes seconds; the real SmolLM2 runs in the
embedded quickstart test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from db.models import EvalResult, Job, Prediction, Sweep
from db.session import session_scope
from db.states import TERMINAL
from tests.model_fixtures import require

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def sweep_file(tmp_path: Path, model_dir: Path, **changes: object) -> Path:
    spec = {
        "name": "queue-test",
        "seed": 3,
        "model": {"id": str(model_dir), "name": "tiny"},
        "dataset": {"name": "synthetic", "n": 6, "complexity": [1, 2]},
        "eval": {"strategies": ["greedy"], "max_new_tokens": 12, "batch_size": 4},
        **changes,
    }
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def wait_for_sweep(sweep_id: str, timeout: float = 180) -> list[Job]:
    from db import crud

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            jobs = crud.sweep_jobs(session, sweep_id=sweep_id)
        if jobs and all(job.state in {s.value for s in TERMINAL} for job in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} not finished after {timeout}s: {[(j.label, j.state) for j in jobs]}")


def test_submit_runs_on_a_real_worker_and_resubmit_runs_nothing(tmp_path, tiny_model, start_worker, service_env) -> None:
    worker = start_worker()
    path = sweep_file(tmp_path, tiny_model.path)

    submitted = cli("submit", str(path), env=service_env)
    assert submitted.returncode == 0, submitted.stderr
    sweep_id = submitted.stdout.strip().splitlines()[-1]
    (job,) = wait_for_sweep(sweep_id)
    assert job.state == "succeeded", f"{job.error}\n{worker.output()}"
    assert job.attempts == 1 and job.worker and job.worker.startswith("test0@")

    with session_scope() as session:
        result = session.exec(select(EvalResult).where(EvalResult.job_id == job.id)).one()
        predictions = session.exec(select(Prediction).where(Prediction.job_id == job.id)).all()
    assert result.n == 6 == len(predictions)
    assert result.correct == sum(p.correct for p in predictions)
    assert result.ci_low <= result.pass_at_1 <= result.ci_high
    assert all(0 < p.output_tokens <= 12 for p in predictions)

    board = cli("leaderboard", "--sweep", sweep_id, "--format", "json", env=service_env)
    assert board.returncode == 0, board.stderr
    (run,) = json.loads(board.stdout)
    required = {"sweep", "run", "model", "adapter", "strategy", "n", "correct", "pass_at_1", "ci_low", "ci_high", "mean_output_tokens", "tokens_per_s"}
    assert required <= run.keys()
    assert (run["sweep"], run["model"], run["adapter"], run["strategy"], run["n"]) == ("queue-test", "tiny", None, "greedy", 6)

    again = cli("submit", str(path), env=service_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == sweep_id
    assert "0 new jobs, 1 already succeeded" in " ".join(again.stdout.split())
    time.sleep(3)  # give a wrongly enqueued job the time to run
    with session_scope() as session:
        assert session.get(Job, job.id).attempts == 1
        assert len(session.exec(select(EvalResult).where(EvalResult.job_id == job.id)).all()) == 1


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_model, start_worker, service_env) -> None:
    """A train job that needs NF4 (CUDA) where CPU fallback is forbidden fails with the field named,
    its eval is cancelled, the base eval still runs. (CI has no GPU, which is what makes it fail.)"""
    import torch

    require(not torch.cuda.is_available(), "this test needs a machine without CUDA")
    start_worker()
    train = {"method": "qlora", "lora_rank": [4], "traces": [5], "allow_cpu_fallback": False}
    path = sweep_file(tmp_path, tiny_model.path, name="failing", train=train)
    submitted = cli("submit", str(path), env=service_env)
    assert submitted.returncode == 0, submitted.stderr
    jobs = {job.kind + (":adapter" if job.spec.get("adapter") else ""): job for job in wait_for_sweep(submitted.stdout.split()[-1])}
    assert jobs["eval"].state == "succeeded"
    assert jobs["train"].state == "failed" and "train.allow_cpu_fallback" in jobs["train"].error
    assert jobs["eval:adapter"].state == "cancelled" and "failed" in jobs["eval:adapter"].error
    status = cli("status", submitted.stdout.split()[-1], env={**service_env, "COLUMNS": "200"})
    assert status.returncode == 0 and "failed" in status.stdout and "cancelled" in status.stdout


def test_dry_run_writes_and_enqueues_nothing(tmp_path, tiny_model, service_env, redis_url) -> None:
    import redis

    path = sweep_file(tmp_path, tiny_model.path, name="dry")
    with session_scope() as session:
        before = len(session.exec(select(Sweep)).all())
    result = cli("submit", "--dry-run", str(path), env=service_env)
    assert result.returncode == 0, result.stderr
    assert "1 jobs" in result.stdout and "nothing written" in result.stdout
    with session_scope() as session:
        assert len(session.exec(select(Sweep)).all()) == before
    assert redis.Redis.from_url(redis_url).llen("reasonfleet") == 0


def test_bad_sweep_exits_2_with_the_field_and_writes_nothing(tmp_path, tiny_model, service_env) -> None:
    path = sweep_file(tmp_path, tiny_model.path, name="bad", eval={"strategies": ["greedy"], "max_new_tokens": -1})
    with session_scope() as session:
        before = len(session.exec(select(Sweep)).all())
    result = cli("submit", str(path), env=service_env)
    assert result.returncode == 2
    assert "eval.max_new_tokens" in result.stderr and "Traceback" not in result.stderr
    with session_scope() as session:
        assert len(session.exec(select(Sweep)).all()) == before


def test_unreachable_services_are_named_with_the_password_masked(tmp_path, tiny_model, postgres_url) -> None:
    path = sweep_file(tmp_path, tiny_model.path, name="nobroker")
    env = {**os.environ, "REASONFLEET_DATABASE_URL": postgres_url, "REASONFLEET_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"}
    result = cli("submit", str(path), env=env)
    assert result.returncode == 3
    assert "cannot reach the broker at redis://:***@127.0.0.1:1/0" in " ".join(result.stderr.split())
    assert "hunter2" not in result.stderr + result.stdout
    with session_scope(postgres_url) as session:
        assert session.exec(select(Sweep).where(Sweep.name == "nobroker")).first() is None

    env["REASONFLEET_DATABASE_URL"] = "postgresql://rf:s3cret@127.0.0.1:1/nowhere"
    result = cli("submit", str(path), env=env)
    assert result.returncode == 3
    assert "cannot reach the database at postgresql+psycopg://rf:***@127.0.0.1:1/nowhere" in " ".join(result.stderr.split())
    assert "s3cret" not in result.stderr + result.stdout

    worker = subprocess.run(
        [sys.executable, "-m", "workers.cli", "start"], env={**env, "REASONFLEET_SERVICE_WAIT_S": "0"}, cwd=REPO,
        capture_output=True, text=True, timeout=60,
    )
    assert worker.returncode == 3 and "s3cret" not in worker.stderr and "cannot reach the database" in worker.stderr
