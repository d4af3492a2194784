"""A worker in a container must not take its own training job for the owner's game.

NVML reports host PIDs, never the container's (the driver does not support PID namespaces:
NVIDIA/nvidia-docker#1483). These tests inject NVML readings, the one GPU mock: the unit tests
feed `ProcessIdentity` directly, the worker tests put tests/fake_nvml/pynvml.py (which reads a
JSON file) in front of a real `workers start`, so the real probe, heartbeat thread, yield policy
and requeue run on PIDs translated as a container's would be.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from db.broker import enqueue_jobs, make_app
from tests.fleet_helpers import noop_drafts, record, wait_until
from tests.test_fleet_yield_worker import consumed_queues, job, worker_row
from workers.gpu import IDENTITY_APPEARED, IDENTITY_PID, ProcessIdentity
from workers.yield_policy import identified_probe

FAKE_NVML = Path(__file__).parent / "fake_nvml"
HOST_OFFSET = 5_000_000  # above any Linux pid_max: a "host PID" that is never one of this machine's


# --------------------------------------------------------------------------- the identity, fed directly


def test_in_another_pid_namespace_the_process_that_appeared_with_our_job_is_ours() -> None:
    decided: list[str] = []
    identity = ProcessIdentity(on_decided=lambda mechanism, why: decided.append(mechanism))
    own = {100, 101}  # the worker's process tree, in its own namespace
    assert identity.ours({7}, own, jobs_running=0) == set()  # Xorg-like process before any job: baseline
    assert identity.ours({7}, own, jobs_running=1) == set()  # our job loads its model: no context yet
    assert identity.ours({7, 90001}, own, jobs_running=1) == {90001}  # our context appears, as a host PID
    assert decided == [IDENTITY_APPEARED]
    assert identity.ours({7, 90001, 90500}, own, jobs_running=1) == {90001}  # a game appears later: foreign
    assert identity.ours({7, 90001}, own, jobs_running=0) == {90001}  # job over, its process still exiting
    assert identity.ours({7}, own, jobs_running=0) == set()  # gone: everything listed is foreign
    assert identity.ours({7, 90777}, own, jobs_running=1) == {90777}  # the next job's child


def test_when_pids_match_identity_is_by_pid_and_a_process_that_appears_first_stays_foreign() -> None:
    decided: list[str] = []
    identity = ProcessIdentity(on_decided=lambda mechanism, why: decided.append(mechanism))
    own = {100, 101}
    identity.ours(set(), own, jobs_running=0)
    assert identity.ours({101}, own, jobs_running=1) == {101} and decided == [IDENTITY_PID]
    assert identity.ours({101, 555}, own, jobs_running=1) == {101}
    assert identity.ours({101, 555}, own, jobs_running=0) == {101}  # our child still exiting is not the owner's
    identity.ours(set(), own, jobs_running=0)
    assert identity.ours({555}, own, jobs_running=1) == set()  # by PID: a game before our context is foreign


def test_the_probe_reports_only_foreign_processes_and_hides_our_own_utilisation() -> None:
    readings = iter([(0.0, set()), (99.0, {90001}), (99.0, {90001, 90500})])
    running = iter([0, 1, 1])
    probe = identified_probe(lambda: next(readings), lambda: {100}, lambda: next(running))
    assert probe().foreign_processes == ()
    ours_only = probe()
    assert ours_only.foreign_processes == () and ours_only.utilization_pct == 0.0
    with_game = probe()
    assert with_game.foreign_processes == ("pid 90500",) and with_game.utilization_pct == 99.0


# --------------------------------------------------------------------------- a real worker on translated PIDs


def pool_child(worker_pid: int) -> int:
    children = psutil.Process(worker_pid).children(recursive=True)
    assert children, "the prefork pool has a child"
    return children[-1].pid


@pytest.fixture()
def nvml_worker(tmp_path, start_worker):  # type: ignore[no-untyped-def]
    reading = tmp_path / "nvml.json"
    reading.write_text(json.dumps({"utilization_pct": 0, "pids": []}))

    def start():  # type: ignore[no-untyped-def]
        import os

        worker = start_worker({
            "PYTHONPATH": f"{FAKE_NVML}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "FAKE_NVML_FILE": str(reading),
            "REASONFLEET_GPU_PROBE": "nvml", "REASONFLEET_HEARTBEAT_S": "0.5", "REASONFLEET_IDLE_RESUME_S": "2",
            "REASONFLEET_RECONCILE_EVERY_S": "0",
        })
        return worker, reading

    return start


@pytest.mark.slow
def test_a_containerised_worker_keeps_its_own_job_and_still_yields_to_a_game(nvml_worker, service_env) -> None:
    worker, reading = nvml_worker()
    app = make_app()
    row = wait_until(lambda: worker_row("test0@"), 20, "registration")
    assert row.gpu_name == "Fake NVIDIA H100 80GB HBM3" and "rf-80gb" in row.queues.split(",")
    _, (job_id,) = record("pidns", noop_drafts(1, sleep_s=12, tag="pidns"))
    enqueue_jobs(app, [job_id])
    wait_until(lambda: job(job_id).state == "running", 20, "the job to start")

    # Given our job's CUDA context, listed by NVML under its host PID (never one of the container's)
    ours = pool_child(worker.process.pid) + HOST_OFFSET
    reading.write_text(json.dumps({"utilization_pct": 99, "pids": [ours]}))
    time.sleep(3)  # six heartbeats
    assert job(job_id).state == "running" and worker_row("test0@").state != "paused", worker.output()
    assert consumed_queues(app, row.name)
    assert "GPU process identity: appeared" in worker.output()

    # When the owner's game appears beside it, the worker yields within 10 s
    reading.write_text(json.dumps({"utilization_pct": 99, "pids": [ours, 4_242 + HOST_OFFSET]}))
    started = time.monotonic()
    wait_until(lambda: consumed_queues(app, row.name) == [], 10, "the worker to stop consuming")
    assert worker_row("test0@").pause_reason == f"GPU in use by pid {4_242 + HOST_OFFSET}"
    wait_until(lambda: job(job_id).state == "queued", 10, "the job to be handed back")
    print(f"\ncontainerised worker yielded {time.monotonic() - started:.1f} s after the game appeared")


@pytest.mark.slow
def test_a_worker_whose_pids_match_nvml_says_so(nvml_worker, service_env) -> None:
    worker, reading = nvml_worker()
    wait_until(lambda: worker_row("test0@"), 20, "registration")
    _, (job_id,) = record("pidns-same", noop_drafts(1, sleep_s=4, tag="pidns-same"))
    enqueue_jobs(make_app(), [job_id])
    wait_until(lambda: job(job_id).state == "running", 20, "the job to start")
    reading.write_text(json.dumps({"utilization_pct": 99, "pids": [pool_child(worker.process.pid)]}))
    wait_until(lambda: job(job_id).state == "succeeded", 30, "the job to finish without a yield", detail=worker.output)
    assert "GPU process identity: pid" in worker.output()
    assert "paused:" not in worker.output()  # never yielded to its own job
