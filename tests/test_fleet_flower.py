"""`orchestrator flower` against the test Redis: basic auth, and meaningful (never secret) task names and arguments."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fleet_helpers import noop_drafts, record, wait_until
from workers.celery_app import enqueue_jobs, make_app

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
AUTH = "fleet:correct-horse"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, auth: str | None = AUTH) -> tuple[int, object]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, ConnectionError, ValueError):
        return 0, None


def test_flower_shows_workers_and_labelled_tasks_behind_basic_auth(start_worker, service_env, tmp_path) -> None:
    worker = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    port = free_port()
    log = (tmp_path / "flower.log").open("w")
    flower = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "flower", "--port", str(port)],
        env={**service_env, "REASONFLEET_FLOWER_AUTH": AUTH}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: get(f"{base}/api/workers", auth=None)[0] == 401, 40, "Flower to answer (and refuse without auth)")
        assert get(f"{base}/api/workers", auth="fleet:wrong")[0] == 401
        sweep_id, (job_id,) = record("flower-sweep", noop_drafts(1, sleep_s=0.5, tag="flower"))
        enqueue_jobs(make_app(), [job_id])

        def our_task() -> dict | None:
            status, tasks = get(f"{base}/api/tasks")
            return next((t for t in (tasks or {}).values() if job_id in str(t.get("args"))), None) if status == 200 else None

        task = wait_until(our_task, 40, "the task in Flower")
        assert task["name"] == "reasonfleet.run_job"  # the stable registered name; the kind and run are in kwargs
        assert "'sweep': 'flower-sweep'" in task["kwargs"] and "'kind': 'noop'" in task["kwargs"] and "noop flower #0" in task["kwargs"]
        status, workers = get(f"{base}/api/workers?refresh=1")
        assert status == 200 and any(name.startswith("test0@") for name in workers), workers
        everything = json.dumps(get(f"{base}/api/tasks")[1])
        assert "postgresql" not in everything and "REASONFLEET" not in everything  # no URLs, no settings
    finally:
        flower.terminate()
        flower.wait(timeout=20)
        log.close()
    assert AUTH.split(":")[1] not in (tmp_path / "flower.log").read_text()
