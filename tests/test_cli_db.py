"""`orchestrator db upgrade` against a real, empty Postgres database, and the refusal before it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_fixtures import scratch_database

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def empty_database() -> Iterator[str]:
    with scratch_database("rf_empty") as url:
        yield url


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
