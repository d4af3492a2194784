"""The runner against the real Postgres: CUDA OOM handling, and the one-statement success path with dependants.

A real CUDA OOM cannot happen on this CPU-only machine: the job function here raises
torch's own `torch.cuda.OutOfMemoryError` (constructible without a GPU); everything after
it (the routing decision, the spec's batch, the queue, the state machine) is the real path.
"""

from __future__ import annotations

import pytest
import torch

from db.models import Job
from db.session import session_scope
from tests.fleet_helpers import record, tiny_eval_drafts
from workers import runner


@pytest.fixture()
def oom_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(job_id, spec, heartbeat):  # type: ignore[no-untyped-def]
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setitem(runner.RUNNERS, "eval", out_of_memory)


def job(job_id: str) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def test_oom_halves_the_batch_once_then_climbs_the_classes_then_fails(service_env, tiny_model, oom_everywhere) -> None:
    (draft,) = tiny_eval_drafts(str(tiny_model.path), 1, tag="oom")
    _, (job_id,) = record("oom", [draft.__class__(**{**draft.__dict__, "queue": "rf-24gb", "vram_mb": 18_000})])
    assert job(job_id).spec["batch_size"] == 2

    first = runner.execute_job(job_id, worker="w")
    assert (first.state, first.ready) == ("queued", [job_id])
    after = job(job_id)
    assert (after.spec["batch_size"], after.queue, after.ooms, after.attempts) == (1, "rf-24gb", 1, 0)
    assert after.error == "CUDA out of memory: retrying with batch 1"

    runner.execute_job(job_id, worker="w")
    assert (job(job_id).queue, job(job_id).spec["batch_size"]) == ("rf-48gb", 1)
    runner.execute_job(job_id, worker="w")
    assert job(job_id).queue == "rf-80gb"
    last = runner.execute_job(job_id, worker="w")
    assert last.state == "failed" and last.ready == []
    assert job(job_id).error.startswith("CUDA out of memory at batch 1 on the largest class (rf-80gb)")


def test_a_noop_parent_queues_its_dependant_in_the_same_transaction(service_env) -> None:
    """The one-statement success path still queues dependants (and only when their dependencies all succeeded)."""
    from db.crud import JobDraft
    from tests.fleet_helpers import noop_drafts

    parent, other = noop_drafts(2, tag="parent")
    (child,) = noop_drafts(1, tag="child")
    child = JobDraft(**{**child.__dict__, "depends_on": (parent.spec_hash, other.spec_hash)})
    _, ready = record("deps", [parent, other, child])
    ids = {job(i).label: i for i in ready}
    assert set(ids) == {"noop parent #0", "noop parent #1"}
    assert runner.execute_job(ids["noop parent #0"], worker="w").ready == []  # the other parent is not done yet
    (child_id,) = runner.execute_job(ids["noop parent #1"], worker="w").ready
    assert job(child_id).state == "queued" and job(child_id).label == "noop child #0"
    assert runner.execute_job(child_id, worker="w").state == "succeeded"


def test_a_nul_byte_in_a_model_output_does_not_fail_the_job() -> None:
    """Found by the chaos test: a random model decoded a byte-level token to NUL, which Postgres text refuses."""
    from workers.results import pg_text

    assert pg_text("has\x00 8") == "has\ufffd 8" and pg_text("plain") == "plain"
