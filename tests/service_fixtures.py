"""Real Postgres, Redis and Celery worker processes for the integration tests.

Outside CI a missing service skips its tests with the reason; under CI=true it fails them,
because CI promises the services are up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from tests.model_fixtures import require

PG_ADMIN_URL = os.environ.get("REASONFLEET_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("REASONFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REPO = Path(__file__).resolve().parents[1]
# A test worker computes on one thread. With a thread per core, three workers on a 2-core machine
# that runs something else too wait on each other in OpenMP barriers: a tiny eval job of 0.5 s took
# 2-18 s, and over a minute on a busier machine. Variables set by whoever runs the tests win.
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def unavailable(reason: str) -> None:
    """Skip (a developer's machine without the service) or fail (CI, which must have it)."""
    require(False, reason)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new, empty Postgres database that is dropped afterwards; skips (or fails under CI) without Postgres."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(error).__name__}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        from db.session import get_engine

        get_engine.cache_clear()  # pooled connections would block the drop
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated database for this test session, dropped afterwards."""
    from db.migrate import upgrade

    with scratch_database("rf_test") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database number of its own (claimed with a lock key, so parallel test runs never share one)."""
    lock_client = redis.Redis.from_url(f"{REDIS_BASE_URL}/0", socket_connect_timeout=2)
    token = uuid.uuid4().hex
    try:
        db_number = next((n for n in range(1, 16) if lock_client.set(f"reasonfleet-test-db:{n}", token, nx=True, ex=3600)), None)
    except redis.RedisError as error:
        unavailable(f"Redis not reachable at {REDIS_BASE_URL}: {error}")
    if db_number is None:
        pytest.fail("all Redis test databases 1-15 are claimed by other test runs")
    url = f"{REDIS_BASE_URL}/{db_number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    if lock_client.get(f"reasonfleet-test-db:{db_number}") == token.encode():
        lock_client.delete(f"reasonfleet-test-db:{db_number}")


@pytest.fixture()
def service_env(postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process and its children point at the test Postgres and Redis."""
    from db.settings import reload_settings

    monkeypatch.setenv("REASONFLEET_DATABASE_URL", postgres_url)
    monkeypatch.setenv("REASONFLEET_BROKER_URL", redis_url)
    reload_settings()
    yield {**os.environ}
    monkeypatch.undo()
    reload_settings()


class WorkerProcess:
    """A real `workers start` process, logging to a file the test can show on failure."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str) -> None:
        self.name = name
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "start", "--name", name, "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log_path.read_text():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.output()}")
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture()
def start_worker(service_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Factory: start real worker processes; all are stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(extra_env: dict[str, str] | None = None) -> WorkerProcess:
        env = {**WORKER_THREADS, **service_env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
        worker = WorkerProcess(env, tmp_path / f"worker{len(started)}.log", name=f"test{len(started)}@%h")
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture()
def embedded_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Embedded mode in a temp working directory: no REASONFLEET_* variables from outside, artifacts under it,
    settings and engine cache fresh on both sides; the SQLite file the CLI would create."""
    from db.session import get_engine
    from db.settings import reload_settings

    for name in [n for n in os.environ if n.startswith("REASONFLEET_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REASONFLEET_ARTIFACTS", str(tmp_path / "artifacts"))
    reload_settings()
    get_engine.cache_clear()
    yield tmp_path / "reasonfleet.db"
    get_engine.cache_clear()
    reload_settings()
