"""Join and registry: real `workers start` processes register, heart-beat and show up in `orchestrator workers`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from db.broker import enqueue_jobs, make_app
from tests.fleet_helpers import kill_tree, noop_drafts, record, wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FAST = {"REASONFLEET_HEARTBEAT_S": "0.5", "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"}


def fleet(env: dict[str, str]) -> dict[str, dict]:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "workers", "--format", "json"],
        env={**env, "REASONFLEET_GONE_AFTER_S": "3"}, cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return {row["name"].split("@")[0]: row for row in json.loads(result.stdout)}


def test_workers_register_heartbeat_and_show_their_state(start_worker, service_env) -> None:
    # Given a CPU-only worker that joined the fleet
    worker = start_worker(FAST)
    row = wait_until(lambda: fleet(service_env).get("test0"), 20, "the worker's row")
    assert (row["state"], row["gpu"], row["class"], row["queues"]) == ("idle", "CPU only", "cpu", "reasonfleet")
    assert row["host"] and row["version"] and row["heartbeat_age_s"] < 3

    # When it runs a 3-second job, it is busy on that job; afterwards idle again
    _, (job_id,) = record("registry", noop_drafts(1, sleep_s=3, tag="registry"))
    enqueue_jobs(make_app(), [job_id])
    busy = wait_until(lambda: fleet(service_env)["test0"]["doing"] == f"busy on job {job_id}", 20, "busy on the job")
    assert busy
    wait_until(lambda: fleet(service_env)["test0"]["state"] == "idle", 20, "idle after the job")

    # A worker killed with -9 stops heart-beating and is shown as gone; a stopped one as stopped
    second = start_worker(FAST)
    wait_until(lambda: fleet(service_env).get("test1", {}).get("state") == "idle", 20, "second worker idle")
    kill_tree(worker.process.pid)
    wait_until(lambda: fleet(service_env)["test0"]["state"] == "gone", 20, "the killed worker shown as gone")
    second.stop()
    assert fleet(service_env)["test1"]["state"] == "stopped", second.output()
