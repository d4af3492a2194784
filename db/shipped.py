"""Shipped data in the database: local data files stored by the sha256 of their bytes (jobs.data.shipped)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from db.models import DatasetBlob
from db.states import now


def store_blobs(session: Session, blobs: Mapping[str, bytes]) -> None:
    """Store each file once: same hash, same bytes, so a row already there (or written by a concurrent
    submit of the same file) is left as it is (INSERT … ON CONFLICT DO NOTHING, in Postgres and SQLite)."""
    if not blobs:
        return
    rows = [{"sha256": sha, "size": len(data), "content": data, "created_at": now()} for sha, data in blobs.items()]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for row in rows:  # one a statement: a blob can be megabytes
        session.execute(dialect.insert(DatasetBlob).values(**row).on_conflict_do_nothing(index_elements=["sha256"]))


def read_blob(session: Session, sha256: str) -> bytes | None:
    blob = session.get(DatasetBlob, sha256)
    return None if blob is None else bytes(blob.content)
