"""Reaching the database, with errors that name the (masked) URL; the broker's check is db.broker.check_broker."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from db.migrate import ensure_schema
from db.session import get_engine
from db.settings import Settings, mask_url
from jobs.errors import ServiceUnavailable


def check_database(url: str) -> None:
    try:
        with get_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        # DBAPIError carries the driver's own error (`orig`), whose first line says why; other errors only a kind.
        orig = getattr(error, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig else type(error).__name__
        raise ServiceUnavailable(f"cannot reach the database at {mask_url(url)}: {reason}") from None


def prepare_database(settings: Settings) -> str:
    """Connect, and migrate the embedded SQLite file; a shared database must be upgraded on purpose."""
    if settings.broker_url and not settings.database_url:
        raise ServiceUnavailable(
            "REASONFLEET_BROKER_URL is set but REASONFLEET_DATABASE_URL is not: "
            "workers on other machines need a shared database"
        )
    url = settings.effective_database_url
    check_database(url)
    ensure_schema(url, auto_upgrade=url.startswith("sqlite"))
    return url
