"""A narrow broker surface (issue #17, item 4): a worker runs ReasonFleet's task and nothing else, refuses a
malformed message without running it, and (optionally) accepts only signed messages."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from db.broker import (
    DEFAULT_QUEUE,
    REGISTERED_TASKS,
    TASK_RUN_JOB,
    enqueue_jobs,
    job_ids_in_broker,
    make_app,
    run_job_argument,
)
from db.models import Job
from db.session import session_scope
from db.settings import Settings
from jobs.errors import SettingsError
from tests.fleet_helpers import noop_drafts, record, wait_until

REPO = Path(__file__).resolve().parents[1]


def job(job_id: str) -> Job:
    with session_scope() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def test_the_worker_app_registers_only_our_task() -> None:
    from workers.celery_app import make_worker_app

    tasks = set(make_worker_app(Settings(broker_url="redis://h:6379/0")).tasks)
    assert tasks == REGISTERED_TASKS == {TASK_RUN_JOB}
    assert not {"celery.accumulate", "celery.map", "celery.starmap", "celery.chunks", "celery.chain",
                "celery.chord", "celery.group", "celery.backend_cleanup"} & tasks


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        (["abc123"], {"evil": 1}, "unexpected keyword arguments ['evil']"),
        (["abc123", "more"], {}, "expected one argument"),
        ([], {}, "expected one argument"),
        ([["a", "list"]], {}, "must be a short string"),
        ([12], {}, "must be a short string"),
        (["../../etc/passwd"], {}, "must be a short string"),
        (["x" * 33], {}, "must be a short string"),
    ],
)
def test_a_malformed_run_job_message_is_named(args: list, kwargs: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        run_job_argument(args, kwargs)
    assert run_job_argument(["0123456789ab"], {}) == "0123456789ab"


@pytest.mark.slow
def test_a_worker_refuses_builtin_tasks_and_malformed_messages(start_worker, service_env, redis_url: str) -> None:
    worker = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    app = make_app()
    _, (target, fine) = record("malformed", noop_drafts(2, tag=f"malformed-{uuid.uuid4().hex[:6]}"))

    # Given Celery's built-in tasks and forged run_job messages, sent by someone with the broker's password
    app.send_task("celery.accumulate", args=[1, 2, 3], queue=DEFAULT_QUEUE)
    app.send_task("celery.map", args=[{"task": TASK_RUN_JOB}, [[target]]], queue=DEFAULT_QUEUE)
    app.send_task(TASK_RUN_JOB, args=[target], kwargs={"evil": "rm -rf /"}, queue=DEFAULT_QUEUE)
    app.send_task(TASK_RUN_JOB, args=[[target]], queue=DEFAULT_QUEUE)

    # Then each is refused and logged, nothing runs, and the job is left for a well-formed message
    wait_until(lambda: worker.output().count("refused a malformed reasonfleet.run_job message") == 2, 30,
               "both malformed messages refused", detail=worker.output)
    wait_until(lambda: "Received unregistered task of type 'celery.accumulate'" in worker.output()
               and "Received unregistered task of type 'celery.map'" in worker.output(), 30,
               "the built-ins refused", detail=worker.output)
    assert (job(target).state, job(target).attempts) == ("queued", 0)
    enqueue_jobs(app, [target, fine])  # the worker is alive; the jobs run from their own messages
    wait_until(lambda: job(target).state == job(fine).state == "succeeded", 30, "the jobs", detail=worker.output)
    client = redis.Redis.from_url(redis_url)
    assert client.llen(DEFAULT_QUEUE) == 0  # refused messages are dropped, not redelivered for ever
    assert worker.output().count("The message has been ignored and discarded") == 2  # Celery logs the KeyError


# --------------------------------------------------------------------------- message signing


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / "certs" / f"{name}.pem"
    cert_path.parent.mkdir(exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_signing_needs_all_three_settings() -> None:
    with pytest.raises(SettingsError, match="go together"):
        make_app(Settings(broker_url="redis://h:6379/0", signing_key="/k.pem"))


@pytest.mark.slow
def test_a_signing_worker_runs_signed_messages_and_refuses_plain_json(
    start_worker, service_env, redis_url: str, tmp_path: Path
) -> None:
    key, cert = make_certificate(tmp_path, "submitter")
    signing = {"REASONFLEET_SIGNING_KEY": str(key), "REASONFLEET_SIGNING_CERT": str(cert),
               "REASONFLEET_SIGNING_CERTS": str(cert.parent / "*.pem")}
    worker = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0", **signing})
    _, (unsigned, signed) = record("signed", noop_drafts(2, tag=f"signed-{uuid.uuid4().hex[:6]}"))

    # A plain JSON message (no signature): refused, its job does not run
    enqueue_jobs(make_app(), [unsigned])
    wait_until(lambda: "untrusted content" in worker.output() or "ContentDisallowed" in worker.output(), 30,
               "the unsigned message refused", detail=worker.output)
    # A signed one, published from another process (setup_security disables other serializers process-wide)
    publish = "from db.broker import enqueue_jobs, make_app; import sys; enqueue_jobs(make_app(), [sys.argv[1]])"
    env = {**os.environ, **signing, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", publish, signed], env=env, check=True, timeout=60)
    wait_until(lambda: job(signed).state == "succeeded", 30, "the signed job", detail=worker.output)
    assert (job(unsigned).state, job(unsigned).attempts) == ("queued", 0)

    # Reconcile reads the job id inside a signed envelope (a queue no worker here consumes keeps it waiting)
    publish_to = ("from db.broker import enqueue, make_app; import sys; "
                  "enqueue(make_app(), sys.argv[1], queue='rf-80gb')")
    subprocess.run([sys.executable, "-c", publish_to, unsigned], env=env, check=True, timeout=60)
    client = redis.Redis.from_url(redis_url)
    assert unsigned in job_ids_in_broker(client, ["rf-80gb"])
    client.delete("rf-80gb")
