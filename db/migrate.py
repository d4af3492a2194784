"""Alembic, driven from code so `orchestrator db upgrade` needs no alembic.ini."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from db.session import get_engine
from jobs.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).with_name("migrations")



def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revisions(url: str) -> set[str]:
    """Every head: features may add migrations on parallel branches until a merge revision joins them."""
    return set(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def current_revisions(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def upgrade(url: str) -> set[str]:
    """Bring the database to the newest schema; returns the revisions it is at."""
    config = alembic_config(url)
    with get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
    return current_revisions(url)


def ensure_schema(url: str, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded SQLite) or refuse to run against an old schema (shared Postgres)."""
    if current_revisions(url) == head_revisions(url):
        return
    if auto_upgrade:
        upgrade(url)
        return
    raise SchemaOutOfDate("the database schema is not up to date: run `orchestrator db upgrade`")
