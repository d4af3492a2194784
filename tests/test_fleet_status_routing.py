"""A job no registered worker can hold stays queued, and `orchestrator status` says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis
import yaml

from db import crud
from db.session import session_scope

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env={**env, "COLUMNS": "250"}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_a_7b_eval_goes_to_a_gpu_class_queue_and_status_explains_the_wait(tmp_path, service_env, redis_url) -> None:
    sweep = {
        "name": "needs-a-gpu", "model": {"id": "Qwen/Qwen2.5-7B-Instruct"}, "dataset": {"name": "synthetic", "n": 5},
        "eval": {"strategies": ["greedy"], "max_new_tokens": 256, "batch_size": 8},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    submitted = cli("submit", str(path), env=service_env)
    assert submitted.returncode == 0, submitted.stderr
    sweep_id = submitted.stdout.split()[-1]
    with session_scope() as session:
        (job,) = crud.sweep_jobs(session, sweep_id=sweep_id)
    # 7.6e9 params x 2 bytes + KV cache for 8 x 512 tokens, x1.15 + 0.5 GB: a 24 GB card
    assert job.state == "queued" and job.queue == "rf-24gb" and 17_000 < job.vram_mb < 20_000
    assert redis.Redis.from_url(redis_url).llen("rf-24gb") == 1  # its message waits in its class's queue

    status = cli("status", sweep_id, env=service_env)
    assert status.returncode == 0, status.stderr
    text = " ".join(status.stdout.split())
    assert f"{job.id} waits: needs ~{job.vram_mb / 1024:.1f} GB (rf-24gb);" in text
    assert "only CPU workers are live" in text or "no live worker registered" in text
    redis.Redis.from_url(redis_url).delete("rf-24gb")


def test_a_measured_cuda_peak_of_a_similar_run_replaces_the_formula(tmp_path, service_env) -> None:
    """No GPU here: the earlier run's result row (a 7B eval that peaked at 9,000 MB of CUDA memory) is written directly."""
    from db.models import EvalResult, Job

    sweep = {
        "name": "measured", "seed": 11, "model": {"id": "Qwen/Qwen2.5-7B-Instruct"}, "dataset": {"name": "synthetic", "n": 5},
        "eval": {"strategies": ["greedy"], "max_new_tokens": 128, "batch_size": 4},
    }
    with session_scope() as session:
        job = Job(kind="eval", label="earlier 7B run", spec={"batch_size": 4, "max_new_tokens": 128}, spec_hash="earlier-7b", state="succeeded")
        session.add(job)
        session.flush()
        session.add(EvalResult(
            job_id=job.id, model="Qwen2.5-7B-Instruct", strategy="greedy", dataset="synthetic", n=5, correct=1, pass_at_1=0.2,
            ci_low=0.0, ci_high=0.6, mean_output_tokens=50, wall_s=1, tokens_per_s=100, peak_memory_mb=9000, memory_kind="cuda",
            device="cuda:0", seed=0,
        ))
    path = tmp_path / "measured.yaml"
    path.write_text(yaml.safe_dump(sweep))
    submitted = cli("submit", str(path), env=service_env)
    assert submitted.returncode == 0, submitted.stderr
    with session_scope() as session:
        (new,) = crud.sweep_jobs(session, sweep_id=submitted.stdout.split()[-1])
    assert new.vram_mb == 10_850 and new.queue == "rf-16gb"  # 9000 x 1.15 + 500; the formula alone says rf-24gb
    redis.Redis.from_url(service_env["REASONFLEET_BROKER_URL"]).delete("rf-16gb")
