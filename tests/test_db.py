"""Database layer against the real Postgres (and the embedded SQLite): migrations, state machine, CRUD."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel, select

from db import crud
from db.crud import JobDraft
from db.migrate import current_revisions, head_revisions, upgrade
from db.models import EvalResult, Job, Prediction
from db.session import get_engine, session_scope
from db.states import IllegalTransition, JobState, now, transition


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    url = f"sqlite:///{tmp_path / 'rf.db'}"
    upgrade(url)
    return url


def drafts(prefix: str) -> list[JobDraft]:
    """train → eval, plus an independent base eval."""
    return [
        JobDraft(spec_hash=f"{prefix}-base", kind="eval", label="base", spec={"k": 1}),
        JobDraft(spec_hash=f"{prefix}-train", kind="train", label="train", spec={"k": 2}),
        JobDraft(spec_hash=f"{prefix}-eval", kind="eval", label="adapter", spec={"k": 3}, depends_on=(f"{prefix}-train",)),
    ]


def submit(url: str, prefix: str) -> crud.SubmitReport:
    with session_scope(url) as session:
        return crud.record_sweep(session, name=prefix, seed=1, spec={"p": prefix}, spec_hash=f"sweep-{prefix}", drafts=drafts(prefix), max_attempts=2)


def job(url: str, spec_hash: str) -> Job:
    with session_scope(url) as session:
        return session.exec(select(Job).where(Job.spec_hash == spec_hash)).one()


def test_migrations_match_the_models(db_url: str) -> None:
    assert current_revisions(db_url) == head_revisions(db_url)
    with get_engine(db_url).connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_state_machine_refuses_illegal_moves() -> None:
    row = Job(kind="eval", label="x", spec={}, spec_hash="h")
    transition(row, JobState.queued)
    transition(row, JobState.running)
    transition(row, JobState.succeeded)
    assert row.finished_at is not None
    with pytest.raises(IllegalTransition, match="succeeded -> running"):
        transition(row, JobState.running)


def test_submit_queues_ready_jobs_and_resubmit_adds_nothing(db_url: str) -> None:
    first = submit(db_url, "a")
    assert (first.new_jobs, first.sweep_existed) == (3, False)
    assert sorted(job(db_url, h).id for h in ("a-base", "a-train")) == sorted(first.to_enqueue)
    assert job(db_url, "a-eval").state == "pending"
    again = submit(db_url, "a")
    assert (again.new_jobs, again.sweep_existed, again.to_enqueue, again.in_progress) == (0, True, [], 3)
    assert again.sweep.id == first.sweep.id


def test_success_releases_dependants_and_failure_cancels_them(db_url: str) -> None:
    submit(db_url, "b")
    train_id = job(db_url, "b-train").id
    with session_scope(db_url) as session:
        claimed = crud.claim(session, job_id=train_id, worker="w1", stale_after_s=60)
        assert claimed is not None and claimed.attempts == 1 and claimed.worker == "w1"
        ready = crud.succeed_running(session, job_id=claimed.id)
    assert ready == [job(db_url, "b-eval").id]
    assert job(db_url, "b-eval").state == "queued"

    submit(db_url, "c")
    with session_scope(db_url) as session:
        claimed = crud.claim(session, job_id=job(db_url, "c-train").id, worker="w1", stale_after_s=60)
        crud.fail(session, job=claimed, error="boom")
    dependant = job(db_url, "c-eval")
    assert dependant.state == "cancelled" and "dependency train" in (dependant.error or "")
    retry = submit(db_url, "c")  # resubmitting retries what failed, and its dependants wait again
    assert retry.retried == 2 and job(db_url, "c-train").state == "queued" and job(db_url, "c-eval").state == "pending"


def test_claim_skips_live_jobs_and_takes_over_stale_ones(db_url: str) -> None:
    submit(db_url, "d")
    job_id = job(db_url, "d-base").id
    with session_scope(db_url) as session:
        assert crud.claim(session, job_id=job_id, worker="w1", stale_after_s=60) is not None
    with session_scope(db_url) as session:
        assert crud.claim(session, job_id=job_id, worker="w2", stale_after_s=60) is None  # alive elsewhere
    with session_scope(db_url) as session:
        session.get(Job, job_id).heartbeat_at = now() - timedelta(seconds=600)
    with session_scope(db_url) as session:
        taken = crud.claim(session, job_id=job_id, worker="w2", stale_after_s=60)
        assert taken is not None and taken.worker == "w2" and taken.attempts == 2
        session.get(Job, job_id).heartbeat_at = now() - timedelta(seconds=600)
    with session_scope(db_url) as session:  # max_attempts=2: the third claim gives up
        assert crud.claim(session, job_id=job_id, worker="w3", stale_after_s=60) is None
    assert job(db_url, "d-base").state == "failed" and "gave up after 2 attempts" in job(db_url, "d-base").error


def test_results_are_written_once(db_url: str) -> None:
    submit(db_url, "e")
    job_id = job(db_url, "e-base").id

    def rows() -> tuple[EvalResult, list[Prediction]]:
        result = EvalResult(
            job_id=job_id, model="m", strategy="greedy", dataset="d", n=1, correct=1, pass_at_1=1.0, ci_low=0.2,
            ci_high=1.0, mean_output_tokens=3, wall_s=1, tokens_per_s=3, peak_memory_mb=1, memory_kind="rss", device="cpu", seed=1,
        )
        prediction = Prediction(
            job_id=job_id, question_id="q1", question="?", reference_answer="2", raw_output="#### 2",
            extracted_answer="2", correct=True, output_tokens=3, latency_s=0.1, complexity=1,
        )
        return result, [prediction]

    for expected in (True, False):
        with session_scope(db_url) as session:
            result, predictions = rows()
            assert crud.insert_eval_result(session, result=result, predictions=predictions) is expected
    with session_scope(db_url) as session:
        assert len(session.exec(select(EvalResult).where(EvalResult.job_id == job_id)).all()) == 1
        assert len(session.exec(select(Prediction).where(Prediction.job_id == job_id)).all()) == 1


def test_cancel_sweep_cancels_unfinished_jobs(db_url: str) -> None:
    report = submit(db_url, "f")
    with session_scope(db_url) as session:
        cancelled = crud.cancel_sweep(session, sweep_id=report.sweep.id)
    assert len(cancelled) == 3
    assert {job(db_url, f"f-{k}").state for k in ("base", "train", "eval")} == {"cancelled"}
