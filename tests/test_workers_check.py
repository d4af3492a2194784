"""`workers check` against real Redis and Postgres, and a worker that refuses a job submitted
with other result-changing package versions.

The GPU case runs the check on injected NVML readings (tests/fake_nvml, the one GPU mock):
NVML "sees" a card, and the real CUDA child process then fails on this CPU-only torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.specs import job_spec_from_json
from orchestrator.expand import content_hash, expand
from orchestrator.submit import with_versions
from orchestrator.sweep import load_sweep
from tests.service_fixtures import REPO

FAKE_NVML = Path(__file__).parent / "fake_nvml"


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", "check", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=240,
    )


def with_password(url: str) -> str:
    """The test database's URL with a password (trust auth ignores it): the check must never print it."""
    return url.replace("postgres@", "postgres:check-secret-pw@", 1)


def lines_of(output: str) -> dict[str, str]:
    """check name -> its status, from the report's first column."""
    found = {}
    for line in output.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("ok", "warn", "skip", "FAIL"):
            found[parts[1] if parts[1] != "artifact" else "artifact store"] = parts[0]
    return found


def test_a_worker_that_would_run_jobs_passes(service_env, tmp_path: Path) -> None:
    env = {**service_env, "REASONFLEET_ARTIFACTS": str(tmp_path / "store"), "REASONFLEET_GPU_PROBE": "none"}
    done = check(env, "--db", with_password(service_env["REASONFLEET_DATABASE_URL"]))
    print("\n" + done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = lines_of(done.stdout)
    assert statuses == {
        "gpu": "warn", "cuda": "skip", "bitsandbytes": "skip", "queues": "ok", "broker": "ok", "database": "ok",
        "artifact store": "ok", "clock": "ok", "versions": "ok",
    }
    assert "consumes reasonfleet" in done.stdout and "from the database's clock" in done.stdout
    assert "check-secret-pw" not in done.stdout + done.stderr and "postgres:***@" in done.stdout
    assert done.stdout.rstrip().endswith("this worker would run jobs")


def test_an_unreachable_broker_is_named_and_fails(service_env, tmp_path: Path) -> None:
    env = {**service_env, "REASONFLEET_ARTIFACTS": str(tmp_path / "store")}
    done = check(env, "--broker", "redis://:broker-secret@127.0.0.1:1/0")
    assert done.returncode == 1
    assert "FAIL  broker" in done.stdout and "cannot reach the broker at redis://:***@127.0.0.1:1/0" in done.stdout
    assert "fix: start Redis" in done.stdout and "broker-secret" not in done.stdout + done.stderr
    assert lines_of(done.stdout)["database"] == "ok"  # the rest is still checked
    assert done.stdout.rstrip().endswith("this worker would NOT run jobs")


def test_a_gpu_without_working_cuda_fails_with_the_fix(service_env, tmp_path: Path) -> None:
    reading = tmp_path / "nvml.json"
    reading.write_text('{"utilization_pct": 0, "pids": [], "used_mb": 1000}')
    env = {
        **service_env, "REASONFLEET_ARTIFACTS": str(tmp_path / "store"), "FAKE_NVML_FILE": str(reading),
        "PYTHONPATH": f"{FAKE_NVML}{os.pathsep}{service_env.get('PYTHONPATH', '')}",
    }
    done = check(env)
    assert done.returncode == 1
    assert "Fake NVIDIA H100 80GB HBM3 81559 MiB (80559 MiB free), driver 580.00-fake" in done.stdout
    assert "memory class rf-80gb; consumes reasonfleet, rf-4gb" in done.stdout
    assert "FAIL  cuda" in done.stdout and "fix: install a torch build" in done.stdout


# --------------------------------------------------------------------------- versions


SWEEP = """
name: versions
model: {id: Qwen/Qwen2.5-0.5B-Instruct}
dataset: {name: synthetic, n: 4}
eval: {strategies: [greedy]}
train: {method: qlora, lora_rank: [8], traces: [4], source: {name: synthetic, n: 4}}
"""


def test_submit_records_versions_outside_the_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    drafts = expand(load_sweep(path))
    stamped = with_versions(drafts)
    for before, after in zip(drafts, stamped, strict=True):
        assert after.spec_hash == before.spec_hash == content_hash(before.spec)
        assert after.spec["versions"]["torch"] and after.spec["versions"]["transformers"]
        assert job_spec_from_json(after.spec).model_dump(mode="json") == after.spec  # travels typed, unchanged
        assert job_spec_from_json(before.spec).model_dump(mode="json") == before.spec  # none recorded: no key


@pytest.mark.slow
def test_a_worker_refuses_a_job_submitted_with_other_versions(tiny_model, start_worker, service_env, tmp_path) -> None:
    from db.broker import enqueue_jobs, make_app
    from db.models import Job
    from db.session import session_scope
    from tests.fleet_helpers import record, tiny_eval_drafts, wait_until
    from tests.test_fleet_yield_worker import job

    (draft,) = tiny_eval_drafts(str(tiny_model.path), 1, tag="versions")
    draft.spec["versions"] = {"transformers": "4.0.0"}
    _, (job_id,) = record("versions", [draft], max_attempts=1)

    # The check names the difference from the orchestrator's latest submit
    done = check({**service_env, "REASONFLEET_ARTIFACTS": str(tmp_path / "store")})
    assert done.returncode == 1 and "FAIL  versions" in done.stdout
    assert "transformers: submitted with 4.0.0, this worker has" in done.stdout
    assert "fix: pip install transformers==4.0.0" in done.stdout

    # and a worker refuses the job with the reason
    worker = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    enqueue_jobs(make_app(), [job_id])
    refused = wait_until(lambda: job(job_id).state == "failed" and job(job_id), 60, "the job to be refused")
    assert "refused: package versions differ from the submit's (transformers: submitted with 4.0.0" in refused.error
    assert "refused: package versions differ" in worker.output()
    with session_scope() as session:  # later checks in this session's database compare with their own submits
        stale = session.get(Job, job_id)
        stale.spec = {key: value for key, value in stale.spec.items() if key != "versions"}
