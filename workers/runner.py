"""Run one job by id: claim its row, call the plain job function, record the outcome.

Shared by the Celery task and the embedded in-process executor, so both paths write
the same rows through the same state machine.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import select

from db import crud
from db.models import Job
from db.session import session_scope
from db.states import JobState
from jobs.errors import FatalJobError, JobCancelled, RetryableError
from jobs.specs import AuditJobSpec, EvalJobSpec, TrainJobSpec

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 2.0
# A running job whose heartbeat is older than this is presumed lost and may be taken over.
STALE_AFTER_S = 120.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunReport:
    job_id: str
    state: str
    ready: list[str]  # dependants now queued, for the caller to enqueue


def worker_name() -> str:
    return socket.gethostname()


def execute_job(job_id: str, *, worker: str | None = None, on_progress: Progress | None = None) -> RunReport:
    """Run `job_id` to an end state; never raises for a job's own failure."""
    with session_scope() as session:
        job = crud.claim(session, job_id=job_id, worker=worker or worker_name(), stale_after_s=STALE_AFTER_S)
        if job is None:
            state = session.get(Job, job_id)
            return RunReport(job_id, state.state if state else "missing", [])
        kind, spec = job.kind, job.spec
    heartbeat = _Heartbeat(job_id, on_progress)
    try:
        return _finish(job_id, kind, spec, heartbeat)
    except JobCancelled:
        log.info("job %s was cancelled while running", job_id)
        return RunReport(job_id, JobState.cancelled.value, [])
    except RetryableError as error:
        return _requeue(job_id, error)
    except Exception as error:  # noqa: BLE001  (a job's failure is recorded, never raised)
        return _fail(job_id, error)


def _finish(job_id: str, kind: str, spec: dict, heartbeat: "_Heartbeat") -> RunReport:
    runner = RUNNERS.get(kind)
    if runner is None:
        raise FatalJobError(f"unknown job kind {kind!r}")
    return runner(job_id, spec, heartbeat)


def _run_eval(job_id: str, spec_json: dict, heartbeat: "_Heartbeat") -> RunReport:
    from jobs import eval as eval_job  # heavy ML imports only when a job runs
    from workers.results import eval_rows

    spec = EvalJobSpec.model_validate(spec_json)
    outcome = eval_job.run(spec, adapter_path=_adapter_path(spec), progress=heartbeat)
    result, predictions = eval_rows(job_id, spec, outcome)
    with session_scope() as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.state != JobState.running.value:
            raise JobCancelled(job_id)
        crud.insert_eval_result(session, result=result, predictions=predictions)
        ready = crud.succeed(session, job=job)
    return RunReport(job_id, JobState.succeeded.value, ready)


def _run_train(job_id: str, spec_json: dict, heartbeat: "_Heartbeat") -> RunReport:
    from db.settings import get_settings
    from jobs import train
    from workers.results import train_row

    spec = TrainJobSpec.model_validate(spec_json)
    with session_scope() as session:
        key = session.get(Job, job_id).spec_hash  # type: ignore[union-attr]
    # Keyed by spec hash: a re-delivered or retried attempt finds its checkpoints and resumes.
    outcome = train.run(spec, artifacts_root=get_settings().artifacts, job_key=key, progress=heartbeat)
    with session_scope() as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.state != JobState.running.value:
            raise JobCancelled(job_id)
        crud.insert_train_result(session, result=train_row(job_id, spec, outcome))
        ready = crud.succeed(session, job=job, artifact_uri=outcome.adapter_uri)
    return RunReport(job_id, JobState.succeeded.value, ready)


def _run_audit(job_id: str, spec_json: dict, heartbeat: "_Heartbeat") -> RunReport:
    from db.models import AuditResult
    from jobs import audit

    spec = AuditJobSpec.model_validate(spec_json)
    with session_scope() as session:
        train = session.exec(select(Job).where(Job.spec_hash == spec.train_job)).first()
    if train is None or not train.artifact_uri:
        raise FatalJobError(f"adapter of train job {spec.train_job} is not available")
    from jobs.artifacts import fetch_dir

    outcome = audit.run(spec, adapter_path=str(fetch_dir(train.artifact_uri)), progress=heartbeat)
    with session_scope() as session:
        job = session.exec(select(Job).where(Job.id == job_id).with_for_update()).one()
        if job.state != JobState.running.value:
            raise JobCancelled(job_id)
        crud.insert_audit_result(session, result=AuditResult(job_id=job_id, train_job_id=train.id, **outcome.to_json()))
        ready = crud.succeed(session, job=job)
    return RunReport(job_id, JobState.succeeded.value, ready)


RUNNERS: dict[str, Callable[[str, dict, "_Heartbeat"], RunReport]] = {
    "eval": _run_eval, "train": _run_train, "audit": _run_audit,
}


def _adapter_path(spec: EvalJobSpec) -> str | None:
    if spec.adapter is None:
        return None
    from jobs.artifacts import fetch_dir

    if spec.adapter.uri:
        return str(fetch_dir(spec.adapter.uri))
    with session_scope() as session:
        train = session.exec(select(Job).where(Job.spec_hash == spec.adapter.train_job)).first()
    if train is None or not train.artifact_uri:
        raise FatalJobError(f"adapter of train job {spec.adapter.train_job} is not available")
    # Another PC may have trained it: fetch it from the artifact store into a local cache.
    return str(fetch_dir(train.artifact_uri))


def _requeue(job_id: str, error: Exception) -> RunReport:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None and job.state == JobState.running.value:
            crud.requeue(session, job=job, error=f"{type(error).__name__}: {error}")
    return RunReport(job_id, JobState.queued.value, [job_id])


def _fail(job_id: str, error: Exception) -> RunReport:
    log.warning("job %s failed: %s", job_id, error)
    detail = f"{type(error).__name__}: {error}"
    if not isinstance(error, FatalJobError):
        detail += "\n" + "".join(traceback.format_exception(error)[-6:])
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is not None and job.state == JobState.running.value:
            crud.fail(session, job=job, error=detail)
    return RunReport(job_id, JobState.failed.value, [])


class _Heartbeat:
    """Progress callback: writes liveness at most every few seconds and stops a cancelled job."""

    def __init__(self, job_id: str, on_progress: Progress | None) -> None:
        self.job_id = job_id
        self.on_progress = on_progress
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(done, total)
        if time.monotonic() - self.last < HEARTBEAT_EVERY_S and done < total:
            return
        self.last = time.monotonic()
        with session_scope() as session:
            state = crud.heartbeat(session, job_id=self.job_id, done=done, total=total)
        if state != JobState.running.value:
            raise JobCancelled(self.job_id)
