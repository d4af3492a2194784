"""`orchestrator db upgrade` against a real, empty Postgres database, and the refusal before it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.service_fixtures import PG_ADMIN_URL, unavailable

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def empty_database() -> Iterator[str]:
    name = f"rf_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001
        unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(error).__name__}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env["REASONFLEET_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_shared_database_must_be_upgraded_on_purpose(empty_database: str) -> None:
    before = cli("status", database_url=empty_database)
    assert before.returncode == 3
    assert "run `orchestrator db upgrade`" in before.stderr

    upgraded = cli("db", "upgrade", database_url=empty_database)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at revision" in upgraded.stdout

    after = cli("status", database_url=empty_database)
    assert after.returncode == 4
    assert "no sweeps yet" in after.stderr
    again = cli("db", "upgrade", database_url=empty_database)  # idempotent
    assert again.returncode == 0, again.stderr
