"""Run one job by id: claim its row, call the plain job function, record the outcome.

Shared by the Celery task and the embedded in-process executor, so both paths write
the same rows through the same state machine.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

from db import crud, fleet
from db.models import Job
from db.session import get_engine, session_scope
from db.settings import get_settings
from db.states import JobState
from jobs.errors import FatalJobError, JobCancelled, RetryableError
from jobs.resources.placement import spec_runs_remote_code
from jobs.specs import (
    JOB_KINDS,
    AnyJobSpec,
    AuditJobSpec,
    CurateJobSpec,
    EvalJobSpec,
    NoopJobSpec,
    TracesJobSpec,
    TrainJobSpec,
    job_spec_from_json,
)
from workers.db_retry import with_db_retry

log = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 2.0

Progress = Callable[[int, int], None]


class YieldToOwner(RetryableError):
    """The PC's owner needs the GPU: the job goes back to the queue and this attempt does not count."""


@dataclass(frozen=True)
class RunReport:
    job_id: str
    state: str
    ready: list[str]  # dependants now queued, for the caller to enqueue


def worker_name() -> str:
    return socket.gethostname()


def execute_job(job_id: str, *, worker: str | None = None, on_progress: Progress | None = None) -> RunReport:
    """Run `job_id` to an end state; never raises for a job's own failure."""
    refused = with_db_retry(lambda: _refuse_remote_code(job_id))
    if refused is not None:
        return refused
    claimed = with_db_retry(lambda: _claim(job_id, worker or worker_name()))
    if isinstance(claimed, RunReport):
        return claimed
    kind, spec = claimed
    heartbeat = _Heartbeat(job_id, on_progress, worker=worker or worker_name())
    try:
        return _finish(job_id, kind, spec, heartbeat)
    except JobCancelled:
        log.info("job %s was cancelled while running", job_id)
        return RunReport(job_id, JobState.cancelled, [])
    except RetryableError as error:
        return _requeue(job_id, error)
    except Exception as error:  # noqa: BLE001  (a job's failure is recorded, never raised)
        if is_cuda_oom(error):
            return _after_oom(job_id, error)
        return _fail(job_id, error)


def _refuse_remote_code(job_id: str) -> RunReport | None:
    """A job whose model runs its repo's code, on a worker whose owner did not allow it (--allow-remote-code):
    left queued, unclaimed. Its queue is one only consenting workers consume; a message that reached this one
    anyway (forged, or sent to the wrong queue) is dropped, and reconcile re-publishes to the job's own queue."""
    if get_settings().allow_remote_code:
        return None
    with get_engine().connect() as connection:
        row = connection.execute(select(Job.state, Job.spec).where(col(Job.id) == job_id)).first()
    if row is None or not spec_runs_remote_code(row[1]):
        return None
    log.warning("job %s: its model sets trust_remote_code and this worker was not started with --allow-remote-code;"
                " left for a worker that allows it", job_id)
    return RunReport(job_id, row[0], [])


def _claim(job_id: str, worker: str) -> tuple[str, dict[str, Any]] | RunReport:
    # The common case without the ORM: one UPDATE … RETURNING on a plain connection.
    statement = crud.claim_queued_statement(job_id=job_id, worker=worker, returning=(Job.kind, Job.spec))
    with get_engine().begin() as connection:
        row = connection.execute(statement).first()
    if row is not None:
        return row[0], row[1]
    with session_scope() as session:
        # A running job whose heartbeat is older than REASONFLEET_LOST_AFTER_S is presumed lost and may be taken over.
        job = crud.claim(session, job_id=job_id, worker=worker, stale_after_s=get_settings().lost_after_s)
        if job is None:
            state = session.get(Job, job_id)
            return RunReport(job_id, state.state if state else "missing", [])
        return job.kind, job.spec


def _finish(job_id: str, kind: str, spec_json: dict[str, Any], heartbeat: _Heartbeat) -> RunReport:
    if kind not in RUNNERS:
        raise FatalJobError(f"unknown job kind {kind!r}")
    try:
        spec = job_spec_from_json(spec_json)  # the row's JSON as its typed spec: no field is re-defaulted after this
    except ValidationError as error:
        raise FatalJobError(f"invalid {kind} spec: {error}") from None
    if spec.kind != kind:
        raise FatalJobError(f"job kind {kind!r} does not match its spec's kind {spec.kind!r}")
    _check_models_dir(spec)
    _refuse_other_versions(spec)
    return RUNNERS[kind](job_id, spec, heartbeat)


class VersionMismatch(RetryableError):
    """This worker's result-changing packages differ from those the job was submitted with: another
    worker of the fleet may match; after the job's attempts it fails with this reason."""


def _refuse_other_versions(spec: object) -> None:
    from jobs.resources.versions import mismatches

    recorded = getattr(spec, "versions", None)
    differences = mismatches(recorded) if recorded else []
    if differences:
        reason = "refused: package versions differ from the submit's (" + "; ".join(differences) + ")"
        log.warning("%s; install the submitted versions on this worker, or resubmit from a matching machine", reason)
        raise VersionMismatch(reason)



def _check_models_dir(spec: AnyJobSpec) -> None:
    """With --models-dir (REASONFLEET_MODELS_DIR), a local model outside it is not opened: the job fails saying so."""
    from jobs.models.sources import local_model_path, outside

    allowed = get_settings().models_dir
    model = spec.train.model if isinstance(spec, AuditJobSpec) else getattr(spec, "model", None)
    if allowed is None or model is None:
        return
    local = local_model_path(model)
    if local is not None and outside(local, Path(allowed)):
        field = "model.path" if model.path else "model.id"
        raise FatalJobError(f"{field}: this worker loads local models only from under its --models-dir {allowed}")


def _run_eval(job_id: str, spec: EvalJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from jobs import eval as eval_job  # heavy ML imports only when a job runs
    from workers.results import eval_rows

    outcome = eval_job.run(spec, adapter_path=_adapter_path(spec), progress=heartbeat, shipped=read_shipped)
    result, predictions = eval_rows(job_id, spec, outcome)
    # Fresh rows per try: a failed transaction leaves its objects bound to a dead session.
    return _record_success(
        job_id,
        lambda session: crud.insert_eval_result(
            session, result=result.model_copy(), predictions=[p.model_copy() for p in predictions]
        ),
    )


def _run_train(job_id: str, spec: TrainJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from jobs.training import train
    from workers.results import train_row

    with session_scope() as session:
        key = session.get_one(Job, job_id).spec_hash
    # Keyed by spec hash: a re-delivered or retried attempt finds its checkpoints and resumes.
    spec = _with_trace_source(_with_curated_source(spec))
    outcome = train.run(
        spec, artifacts_root=get_settings().artifacts, job_key=key, progress=heartbeat, shipped=read_shipped
    )
    return _record_success(
        job_id, lambda session: crud.insert_train_result(session, result=train_row(job_id, spec, outcome)),
        artifact_uri=outcome.adapter_uri,
    )


def _run_audit(job_id: str, spec: AuditJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from db.models import AuditResult
    from jobs.training import audit

    train_id, adapter_dir = _trained_adapter(spec.train_job)
    outcome = audit.run(spec, adapter_path=adapter_dir, progress=heartbeat, shipped=read_shipped)
    return _record_success(
        job_id,
        lambda session: crud.insert_audit_result(
            session, result=AuditResult(job_id=job_id, train_job_id=train_id, **outcome.to_json())
        ),
    )


def _run_curate(job_id: str, spec: CurateJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from jobs.data import curate_job

    solved = _solved_by_baselines(spec.baselines) if spec.curate.baselines else None
    outcome = curate_job.run(
        spec, solved=solved, artifacts_root=get_settings().artifacts, shipped=read_shipped, progress=heartbeat
    )
    curated = outcome.curated
    write = _dataset_writer(job_id, spec.curate.name, curated.sha256, curated.jsonl, len(curated.items),
                            outcome.uri, outcome.manifest)
    return _record_success(job_id, write, artifact_uri=outcome.uri)


def _run_traces(job_id: str, spec: TracesJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from jobs.data import traces_job

    outcome = traces_job.run(spec, artifacts_root=get_settings().artifacts, shipped=read_shipped, progress=heartbeat)
    traces = outcome.traces
    write = _dataset_writer(job_id, spec.traces.name, traces.sha256, traces.jsonl, len(traces.lines),
                            outcome.uri, outcome.manifest)
    return _record_success(job_id, write, artifact_uri=outcome.uri)


def _dataset_writer(
    job_id: str, name: str, sha256: str, jsonl: bytes, count: int, uri: str | None, manifest: dict[str, Any]
) -> Callable[[Session], None]:
    """What a curate or traces job writes: the JSONL as a shipped blob (what train jobs read, jobs.data.shipped)
    and one CuratedDataset row (the same data built again: still one row)."""
    from db.models import CuratedDataset
    from db.shipped import store_blobs

    def write(session: Session) -> None:
        store_blobs(session, {sha256: jsonl})
        if session.get(CuratedDataset, sha256) is None:
            session.add(CuratedDataset(sha256=sha256, name=name, job_id=job_id, count=count, uri=uri,
                                       manifest=manifest))

    return write


def _solved_by_baselines(baselines: list[str]) -> set[str]:
    """Question ids any baseline eval answered right (its prediction: for a vote, the majority's answer)."""
    from db.models import Prediction

    with session_scope() as session:
        jobs = session.exec(select(Job.id, Job.state).where(col(Job.spec_hash).in_(baselines))).all()
        if len(jobs) != len(baselines) or any(state != JobState.succeeded for _, state in jobs):
            raise FatalJobError("curate.baselines: a baseline eval has not succeeded; nothing to filter by")
        rows = session.exec(
            select(Prediction.question_id).where(
                col(Prediction.job_id).in_([job_id for job_id, _ in jobs]), col(Prediction.correct).is_(True)
            )
        ).all()
    return set(rows)


def _with_curated_source(spec: TrainJobSpec) -> TrainJobSpec:
    """A train job on a curated set: its content hash, from the set's sha256, its curate job's spec hash (this
    sweep's), or its name (the newest of that name), so the worker reads the stored JSONL (db.shipped)."""
    from db.models import CuratedDataset

    source = spec.source
    if source is None or source.name != "curated" or source.sha256 is not None:
        return spec
    ref = str(source.curated)
    with session_scope() as session:
        found = session.get(CuratedDataset, ref)
        if found is None:
            job = session.exec(select(Job.id).where(Job.spec_hash == ref, Job.kind == "curate")).first()
            by = CuratedDataset.job_id == job if job else CuratedDataset.name == ref
            newest = select(CuratedDataset).where(by).order_by(col(CuratedDataset.created_at).desc())
            found = next((d for d in session.exec(newest) if d.manifest.get("kind") != "traces"), None)
    if found is None or found.manifest.get("kind") == "traces":
        raise FatalJobError(f"train.source.curated: no curated dataset {ref!r} (see `orchestrator data list`)")
    return spec.model_copy(update={"source": source.model_copy(update={"sha256": found.sha256})})


def _with_trace_source(spec: TrainJobSpec) -> TrainJobSpec:
    """A distill job on a traces job's output: the trace set's sha256 (given, or found by its traces job's spec
    hash or by name, the newest), as if the sweep had shipped it as `trace_file`."""
    from db.models import CuratedDataset

    params = spec.params
    if params.trace_source is None or params.trace_sha256 is not None:
        return spec
    ref = params.trace_source.traces
    with session_scope() as session:
        found = session.get(CuratedDataset, ref)
        if found is None:
            job = session.exec(select(Job.id).where(Job.spec_hash == ref, Job.kind == "traces")).first()
            by = CuratedDataset.job_id == job if job else CuratedDataset.name == ref
            newest = select(CuratedDataset).where(by).order_by(col(CuratedDataset.created_at).desc())
            found = next((d for d in session.exec(newest) if d.manifest.get("kind") == "traces"), None)
    if found is None or found.manifest.get("kind") != "traces":
        raise FatalJobError(f"train.trace_source.traces: no trace set {ref!r} (see `orchestrator data list`)")
    update = {"trace_file": f"{found.name}.jsonl", "trace_sha256": found.sha256}
    return spec.model_copy(update={"params": params.model_copy(update=update)})


def _record_success(job_id: str, write: Callable[[Session], object], *, artifact_uri: str | None = None) -> RunReport:
    """Mark the running job succeeded and write its result rows in one transaction, retried while the
    database is away; nothing is written when the job was cancelled or taken over meanwhile."""

    def record() -> list[str]:
        with session_scope() as session:
            # First: its row lock orders concurrent attempts, and a lost race writes nothing.
            ready = crud.succeed_running(session, job_id=job_id, artifact_uri=artifact_uri)
            if ready is None:
                raise JobCancelled(job_id)
            write(session)
            return ready

    return RunReport(job_id, JobState.succeeded, with_db_retry(record))


def _run_noop(job_id: str, spec: NoopJobSpec, heartbeat: _Heartbeat) -> RunReport:
    from jobs import noop

    noop.run(spec, progress=heartbeat)

    return RunReport(job_id, JobState.succeeded, with_db_retry(lambda: _succeed(job_id)))


def _succeed(job_id: str) -> list[str]:
    """Success of a job that writes no result rows: one UPDATE on a plain connection for a leaf job."""
    with get_engine().begin() as connection:
        row = connection.execute(crud.succeed_running_statement(job_id=job_id)).first()
        if row is None:
            raise JobCancelled(job_id)
        if not row[1]:
            return []
        # Same transaction: a job never ends succeeded with its dependants left pending.
        with Session(bind=connection, expire_on_commit=False) as session:
            ready = crud.queue_ready_dependants(session, job_id=job_id)
            session.flush()
        return ready




# The registered job kinds, each with its typed spec: a message for any other kind fails its job with the reason.
RUNNERS: dict[str, Callable[[str, Any, _Heartbeat], RunReport]] = {
    "eval": _run_eval, "train": _run_train, "audit": _run_audit, "curate": _run_curate, "traces": _run_traces,
    "noop": _run_noop,
}
assert set(RUNNERS) == JOB_KINDS, "every job kind has a runner"


def read_shipped(sha256: str) -> bytes | None:
    """A local data file as its sweep shipped it (db.shipped): the only way a job here reads one; the path
    a sweep names is never opened on a worker (jobs.data.shipped checks the bytes against the hash)."""
    from db.shipped import read_blob

    def read() -> bytes | None:
        with session_scope() as session:
            return read_blob(session, sha256)

    return with_db_retry(read)


def _adapter_path(spec: EvalJobSpec) -> str | None:
    if spec.adapter is None:
        return None
    if spec.adapter.uri:
        from jobs.resources.artifacts import fetch_dir

        return str(fetch_dir(spec.adapter.uri, get_settings().artifact_cache_dir))
    return _trained_adapter(str(spec.adapter.train_job))[1]


def _trained_adapter(train_hash: str) -> tuple[str, str]:
    """(train job id, local directory of its adapter): another PC may have trained it, so it is
    fetched from the artifact store into a local cache."""
    from jobs.resources.artifacts import fetch_dir

    with session_scope() as session:
        train = session.exec(select(Job).where(Job.spec_hash == train_hash)).first()
    if train is None or not train.artifact_uri:
        raise FatalJobError(f"adapter of train job {train_hash} is not available")
    return train.id, str(fetch_dir(train.artifact_uri, get_settings().artifact_cache_dir))


def is_cuda_oom(error: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and isinstance(error, torch.cuda.OutOfMemoryError))


def _after_oom(job_id: str, error: Exception) -> RunReport:
    """CUDA OOM: half the batch once on the same class, then one memory class up, then fail (routing.after_oom)."""
    from jobs.resources.placement import DEFAULT_QUEUE, after_oom

    def record() -> str:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or job.state != JobState.running:
                return JobState.cancelled
            spec = job_spec_from_json(job.spec)
            decision = after_oom(batch_size=spec.batch_size, queue=job.queue or DEFAULT_QUEUE, ooms_before=job.ooms)
            job.ooms += 1
            if decision.action == "fail":
                crud.fail(session, job=job, error=f"{decision.reason}: {error}"[:2000])
                return JobState.failed
            # The spec keeps its hash (the job asked for is the same); only the batch it runs with shrinks.
            job.spec = spec.with_batch_size(decision.batch_size).model_dump(mode="json")
            job.queue = decision.queue
            crud.requeue(session, job=job, error=decision.reason)
            job.attempts = max(0, job.attempts - 1)  # OOM retries are bounded by after_oom, not by attempts
            return JobState.queued

    state = with_db_retry(record)
    log.warning("job %s: CUDA out of memory -> %s", job_id, state)
    return RunReport(job_id, state, [job_id] if state == JobState.queued else [])


def _requeue(job_id: str, error: Exception) -> RunReport:
    def record() -> None:
        with session_scope() as session:
            if isinstance(error, YieldToOwner):
                fleet.requeue_for_yield(session, job_id=job_id, reason=str(error))
                return
            job = session.get(Job, job_id)
            if job is not None and job.state == JobState.running:
                crud.requeue(session, job=job, error=f"{type(error).__name__}: {error}")

    with_db_retry(record)
    return RunReport(job_id, JobState.queued, [job_id])


def _fail(job_id: str, error: Exception) -> RunReport:
    log.warning("job %s failed: %s", job_id, error)
    detail = f"{type(error).__name__}: {error}"
    if not isinstance(error, FatalJobError):
        detail += "\n" + "".join(traceback.format_exception(error)[-6:])
    def record() -> None:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is not None and job.state == JobState.running:
                crud.fail(session, job=job, error=detail)

    with_db_retry(record)
    return RunReport(job_id, JobState.failed, [])


class _Heartbeat:
    """Progress callback: writes liveness at most every few seconds and stops a cancelled job."""

    def __init__(self, job_id: str, on_progress: Progress | None, worker: str | None = None) -> None:
        self.job_id = job_id
        self.on_progress = on_progress
        self.worker = worker
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(done, total)
        if time.monotonic() - self.last < HEARTBEAT_EVERY_S and done < total:
            return
        self.last = time.monotonic()
        try:
            with session_scope() as session:
                state = crud.heartbeat(session, job_id=self.job_id, done=done, total=total)
                owner_wants_gpu = fleet.yield_request(session, name=self.worker) if self.worker else None
        except OperationalError:
            # The database is away for a moment: keep computing; the result write retries until it is back.
            log.warning("job %s: progress not recorded, the database is unreachable", self.job_id)
            return
        if state != JobState.running:
            raise JobCancelled(self.job_id)
        if owner_wants_gpu:
            self._yield(owner_wants_gpu, done, total)

    def _yield(self, reason: str, done: int, total: int) -> None:
        """The policy decides: hand the job back (another worker may take it) or wait here, paused."""
        # The settings `workers start` installed in this pool child (db.settings.configure), not os.environ.
        if get_settings().yield_mode == "requeue":
            raise YieldToOwner(f"yielded the GPU to its owner: {reason}")
        waiting: str | None = reason
        while waiting:
            time.sleep(HEARTBEAT_EVERY_S)
            with session_scope() as session:
                if crud.heartbeat(session, job_id=self.job_id, done=done, total=total) != JobState.running:
                    raise JobCancelled(self.job_id)
                waiting = fleet.yield_request(session, name=self.worker) if self.worker else None
