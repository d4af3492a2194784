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

from db.broker import enqueue_jobs, make_app
from tests.fleet_helpers import noop_drafts, record, wait_until

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


def our_task(job_id: str) -> dict | None:
    status, tasks = get(f"{BASE[0]}/api/tasks")
    return next((t for t in (tasks or {}).values() if job_id in str(t.get("args"))), None) if status == 200 else None


BASE: list[str] = []


def test_flower_shows_workers_and_labelled_tasks_behind_basic_auth(start_worker, service_env, tmp_path) -> None:
    start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    port = free_port()
    log = (tmp_path / "flower.log").open("w")
    flower = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "flower", "--port", str(port)],
        env={**service_env, "REASONFLEET_FLOWER_AUTH": AUTH}, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    BASE[:] = [base]
    try:
        wait_until(lambda: get(f"{base}/api/workers", auth=None)[0] == 401, 40, "Flower to answer (and refuse without auth)")
        assert get(f"{base}/api/workers", auth="fleet:wrong")[0] == 401
        # Workers send task events only while a Flower asks for them (enable_events, every 5 s):
        # submit a job at a time until Flower has seen one.
        task = None
        for attempt in range(8):
            _, (job_id,) = record(f"flower-sweep-{attempt}", noop_drafts(1, sleep_s=0.5, tag=f"flower{attempt}"))
            enqueue_jobs(make_app(), [job_id])
            try:
                task = wait_until(lambda job_id=job_id: our_task(job_id), 4, "the task in Flower")
                break
            except AssertionError:
                continue
        assert task is not None, "Flower saw none of 8 jobs"
        assert task["name"] == "reasonfleet.noop"  # the shadow name says the kind; sweep and run label are in kwargs
        assert "'sweep': 'flower-sweep-" in task["kwargs"] and "'kind': 'noop'" in task["kwargs"] and "noop flower" in task["kwargs"]
        status, workers = get(f"{base}/api/workers?refresh=1")
        assert status == 200 and any(name.startswith("test0@") for name in workers), workers
        everything = json.dumps(get(f"{base}/api/tasks")[1])
        assert "postgresql" not in everything and "REASONFLEET" not in everything  # no URLs, no settings
    finally:
        flower.terminate()
        flower.wait(timeout=20)
        log.close()
    assert AUTH.split(":")[1] not in (tmp_path / "flower.log").read_text()
