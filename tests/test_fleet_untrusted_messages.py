"""Workers run only what they must: JSON messages, registered job kinds, validated specs."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection, Queue

from db.broker import DEFAULT_QUEUE, TASK_RUN_JOB, enqueue_jobs, make_app
from db.crud import JobDraft
from db.models import Job
from db.session import session_scope
from orchestrator.expand import content_hash
from tests.fleet_helpers import noop_drafts, record, wait_until

pytestmark = pytest.mark.slow


def job(job_id: str) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def publish_pickled(redis_url: str, job_id: str) -> None:
    """A hand-made Celery protocol-2 message for our task, serialised with pickle (what an attacker with broker access sends)."""
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": TASK_RUN_JOB, "id": task_id, "root_id": task_id, "parent_id": None, "group": None,
               "argsrepr": repr([job_id]), "kwargsrepr": "{}", "origin": "attacker", "retries": 0}
    body = ([job_id], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    attacker_format = "pickle"  # deliberately: the worker must refuse it
    with Connection(redis_url) as connection:
        connection.Producer().publish(
            body, exchange="", routing_key=DEFAULT_QUEUE, serializer=attacker_format, headers=headers, declare=[Queue(DEFAULT_QUEUE)],
        )


def test_a_pickle_message_is_refused_and_only_registered_kinds_with_valid_specs_run(start_worker, service_env, redis_url) -> None:
    worker = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    app = make_app()
    _, (pickled, fine) = record("untrusted", noop_drafts(2, tag="untrusted"))

    # A pickle-serialised message for a queued job: refused, the job does not run
    publish_pickled(redis_url, pickled)
    wait_until(lambda: "pickle" in worker.output() and "untrusted content" in worker.output(), 20, "the refusal in the worker log")
    enqueue_jobs(app, [fine])  # the worker is alive and runs the JSON message that follows
    wait_until(lambda: job(fine).state == "succeeded", 20, "the JSON job")
    assert (job(pickled).state, job(pickled).attempts) == ("queued", 0)

    # An unregistered kind and an invalid spec: failed with the reason, nothing run
    drafts = [
        JobDraft(spec_hash=content_hash({"kind": "shell", "cmd": "rm -rf /"}), kind="shell", label="shell", spec={"kind": "shell", "cmd": "rm -rf /"}),
        JobDraft(spec_hash=content_hash({"kind": "noop", "sleep_s": -5}), kind="noop", label="bad noop", spec={"kind": "noop", "sleep_s": -5}),
    ]
    _, (shell, bad) = record("untrusted-kinds", drafts)
    enqueue_jobs(app, [shell, bad])
    wait_until(lambda: job(shell).state == "failed" and job(bad).state == "failed", 20, "both jobs to fail")
    assert "unknown job kind 'shell'" in job(shell).error
    assert "sleep_s" in job(bad).error and "greater than or equal to 0" in job(bad).error
