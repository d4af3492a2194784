"""Alembic, driven from code so `orchestrator db upgrade` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.session import get_engine

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest migration."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str) -> str | None:
    """Bring the database to the newest schema; returns the revision it is at."""
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return current_revision(url)


def ensure_schema(url: str, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded SQLite) or refuse to run against an old schema (shared Postgres)."""
    if current_revision(url) == head_revision(url):
        return
    if auto_upgrade:
        upgrade(url)
        return
    raise SchemaOutOfDate("the database schema is not up to date: run `orchestrator db upgrade`")
