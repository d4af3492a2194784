"""Adapters that travel between PCs: the artifact store as a real S3 server (moto's server mode).

A train job on one worker process uploads its adapter and checkpoints to s3://; an eval job on
another worker process, with an empty cache, downloads the adapter and checks its sha256; a
corrupted object is refused with a clear error; an unreachable store is a retryable failure;
the store's keys never reach a worker's log or the database. The keys travel as AWS_* variables
(botocore's own), never in REASONFLEET_ARTIFACTS.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.errors import FatalJobError, RetryableError
from jobs.resources import artifacts
from tests.model_fixtures import require

BUCKET = "rf-fleet"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on a free port, with keys unique to this run (so a grep for them means something)."""
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        require(False, f"the S3 test needs moto[server] and s3fs (pip install -e '.[dev]'): {error}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": f"AKIARF{uuid.uuid4().hex[:14].upper()}",
        "AWS_SECRET_ACCESS_KEY": f"rf-secret-{uuid.uuid4().hex}",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield env
    server.stop()


@pytest.fixture()
def s3_env(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from s3fs import S3FileSystem

    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    S3FileSystem.clear_instance_cache()  # fsspec caches a filesystem per argument set, not per environment
    fs = S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield s3_server
    S3FileSystem.clear_instance_cache()


def adapter_dir(tmp_path: Path) -> Path:
    local = tmp_path / "adapter"
    (local / "sub").mkdir(parents=True)
    (local / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (local / "adapter_config.json").write_text('{"r": 8}')
    (local / "sub" / "extra.txt").write_text("x")
    return local


def test_a_corrupted_object_is_refused_naming_the_file(s3_env, tmp_path: Path) -> None:
    from s3fs import S3FileSystem

    uri = f"s3://{BUCKET}/corrupt-{uuid.uuid4().hex[:8]}/adapter"
    stored = artifacts.upload_dir(adapter_dir(tmp_path), uri)
    fetched = artifacts.fetch_dir(uri, tmp_path / "cache")
    assert artifacts.directory_digest(fetched)[1] == stored.sha256
    assert (fetched / "sub" / "extra.txt").read_text() == "x"

    S3FileSystem().pipe(uri.removeprefix("s3://") + "/adapter_model.safetensors", b"flipped bits")
    with pytest.raises(FatalJobError) as refused:
        artifacts.fetch_dir(uri, tmp_path / "empty-cache")
    message = str(refused.value)
    assert message.startswith(f"artifact {uri} is corrupt") and "adapter_model.safetensors differ" in message
    assert "adapter_config.json" not in message  # only the damaged file is named


def test_an_unreachable_store_is_retryable_and_names_no_key(s3_env, tmp_path: Path, monkeypatch) -> None:
    from s3fs import S3FileSystem

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    S3FileSystem.clear_instance_cache()
    uri = f"s3://{BUCKET}/away/adapter"
    fetch, upload = lambda: artifacts.fetch_dir(uri, tmp_path), lambda: artifacts.upload_dir(adapter_dir(tmp_path), uri)
    for attempt in (fetch, upload):
        with pytest.raises(RetryableError) as away:
            attempt()
        assert str(away.value).startswith(f"artifact store unreachable for {uri}: EndpointConnectionError")
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in str(away.value)


def test_keys_in_a_url_never_reach_an_error() -> None:
    assert artifacts.without_userinfo("s3://AKIA:secret@host/b") == "s3://***@host/b"


# --------------------------------------------------------------------------- two worker processes


def database_text() -> str:
    """Every row of every table, as text: what a grep of a database dump would see."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine().connect() as connection:
        tables = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        return "\n".join(str(connection.execute(text(f'SELECT * FROM "{t}"')).all()) for t in tables)


@pytest.mark.slow
def test_an_adapter_trained_on_one_worker_is_fetched_and_checked_by_another(
    s3_env, tiny_model, tmp_path: Path, start_worker, service_env
) -> None:
    from s3fs import S3FileSystem
    from sqlmodel import select

    from db.broker import enqueue_jobs, make_app
    from db.crud import JobDraft
    from db.models import TrainResult
    from db.session import session_scope
    from jobs.resources.placement import queue_for
    from jobs.specs import AdapterRef, DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec, TrainJobSpec, TrainParams
    from orchestrator.expand import content_hash
    from tests.fleet_helpers import record, wait_until
    from tests.test_fleet_yield_worker import job

    root = f"s3://{BUCKET}/fleet-{uuid.uuid4().hex[:8]}"
    store_env = {
        **s3_env, "REASONFLEET_ARTIFACTS": root, "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"
    }
    model = ModelSpec(id=str(tiny_model.path), name="tiny")
    params = TrainParams(batch_size=2, epochs=2, max_length=128, checkpoint_every=3, learning_rate=0.02)
    train_spec = TrainJobSpec(
        model=model, method="lora", lora_rank=4, traces=4, source=DatasetSpec(name="synthetic", n=4), params=params,
        seed=1,
    ).model_dump(mode="json")
    train_hash = content_hash(train_spec)
    train_draft = JobDraft(
        spec_hash=train_hash, kind="train", label="train s3", spec=train_spec, vram_mb=0, queue=queue_for(0)
    )

    # Given a train job run by worker A
    trainer = start_worker({**store_env, "REASONFLEET_ARTIFACT_CACHE": str(tmp_path / "cache-a")})
    _, (train_id,) = record("s3-train", [train_draft])
    enqueue_jobs(make_app(), [train_id])
    trained = wait_until(lambda: job(train_id).state in ("succeeded", "failed") and job(train_id), 180, "the train job")
    assert trained.state == "succeeded", f"{trained.error}\n{trainer.output()[-3000:]}"
    trainer.stop()
    job_root = f"{root}/train/{train_hash}"
    assert trained.artifact_uri == f"{job_root}/adapter"
    stored = S3FileSystem().find(job_root.removeprefix("s3://"))
    assert any("/checkpoints/step-00000003/state.pt" in key for key in stored), stored
    assert any(key.endswith("/adapter/adapter_model.safetensors") for key in stored)

    # When worker B, with an empty cache, runs an eval of that adapter
    eval_spec = EvalJobSpec(
        model=model, adapter=AdapterRef(train_job=train_hash, label="lora-r4-t4"),
        dataset=DatasetSpec(name="synthetic", n=2, complexity=(1, 2)), strategy=StrategySpec(name="greedy"),
        max_new_tokens=6, batch_size=2, seed=1,
    ).model_dump(mode="json")
    eval_draft = JobDraft(
        spec_hash=content_hash(eval_spec), kind="eval", label="eval s3", spec=eval_spec, vram_mb=0, queue=queue_for(0)
    )
    cache_b = tmp_path / "cache-b"
    evaluator = start_worker({**store_env, "REASONFLEET_ARTIFACT_CACHE": str(cache_b)})
    _, (eval_id,) = record("s3-eval", [eval_draft])
    enqueue_jobs(make_app(), [eval_id])
    evaluated = wait_until(lambda: job(eval_id).state in ("succeeded", "failed") and job(eval_id), 120, "the eval job")
    assert evaluated.state == "succeeded", f"{evaluated.error}\n{evaluator.output()[-3000:]}"

    # Then B downloaded the adapter, and it is byte for byte what A trained
    (downloaded,) = [p.parent for p in cache_b.rglob("adapter_model.safetensors")]
    with session_scope() as session:
        result = session.exec(select(TrainResult).where(TrainResult.job_id == train_id)).one()
    assert artifacts.directory_digest(downloaded)[1] == result.adapter_sha256

    # and the store's keys appear in no worker log and no database row
    for secret in (s3_env["AWS_SECRET_ACCESS_KEY"], s3_env["AWS_ACCESS_KEY_ID"]):
        assert secret not in trainer.output() and secret not in evaluator.output()
        assert secret not in database_text()
