"""The one settings object, read from REASONFLEET_* environment variables.

It lives in `db/` because that is the bottom layer every other package may import.
Neither URL set means embedded mode: a SQLite file in the working directory and
jobs run in-process.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_DB_FILE = "reasonfleet.db"
# Longer than any job we expect on a home GPU: Redis re-delivers an unacked
# acks_late message after this, so a shorter value would run long jobs twice.
DEFAULT_VISIBILITY_TIMEOUT_S = 24 * 3600


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REASONFLEET_", extra="ignore")

    broker_url: str | None = None
    database_url: str | None = None
    artifacts: str = "artifacts"
    visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S
    max_attempts: int = 3

    @field_validator("database_url")
    @classmethod
    def _normalise_driver(cls, url: str | None) -> str | None:
        if not url:
            return None
        # psycopg 3 is the driver we ship; plain postgres:// URLs would pick psycopg2.
        return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)

    @field_validator("broker_url")
    @classmethod
    def _empty_is_unset(cls, url: str | None) -> str | None:
        return url or None

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process rather than through Celery."""
        return self.broker_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(EMBEDDED_DB_FILE).resolve()}"


def get_settings() -> Settings:
    return _cached_settings()


@lru_cache(maxsize=1)
def _cached_settings() -> Settings:
    return Settings()


def reload_settings() -> Settings:
    """Re-read the environment (tests and the CLI's --broker/--db options change it)."""
    _cached_settings.cache_clear()
    return get_settings()


def mask_url(url: str | None) -> str:
    """The URL with any password replaced, safe for logs, errors and status output."""
    if not url:
        return "<unset>"
    return re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", url)
