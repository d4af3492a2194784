"""Local data files that travel with their sweep: read once at submit, then read back by content hash.

A sweep that names a local JSONL (`dataset.path`, `train.source.path`, `train.trace_file`) is
read and validated on the submitting machine; the bytes are stored under their sha256 (the
database's `dataset_blobs`) and the hash joins the spec, so a changed file is another job.
A worker runs on somebody else's PC: it is handed a `Shipped` reader and never opens the
path the sweep names (`/etc/passwd` would otherwise be read there and parsed into rows).

Called without a reader (tests, notebooks on the submitting machine), the path is read
locally and checked against the recorded hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from jobs.errors import FatalJobError

# sha256 -> the file's bytes as submitted (workers: from the database; None where absent).
Shipped = Callable[[str], bytes | None]

MAX_DATA_BYTES = 64 * 2**20  # a shipped JSONL; GSM8K's train split is 4 MB


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is dropped); ValueError naming the first bad byte otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start}: {data[error.start]:#04x})") from None


def read_local(path: Path) -> bytes:
    """A local data file's bytes, at most MAX_DATA_BYTES; ValueError saying why not."""
    if not path.is_file():
        raise ValueError(f"not a file: {path}" if path.exists() else f"file not found: {path}")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DATA_BYTES + 1)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"{path} is larger than {MAX_DATA_BYTES // 2**20} MiB")
    return data


def file_text(field: str, path: str, sha256: str | None, shipped: Shipped | None) -> str:
    """The text of the file a job's `field` names: the shipped copy on a worker, the path elsewhere."""
    if shipped is not None:
        if sha256 is None:
            raise FatalJobError(
                f"{field}: this job names a local file but carries no shipped copy (submitted before data "
                "travelled with its sweep); a worker opens no path a sweep names: submit the sweep again"
            )
        data = shipped(sha256)
        if data is None:
            raise FatalJobError(f"{field}: shipped data {sha256[:12]} is not in the database")
    else:
        try:
            data = read_local(Path(path))
        except ValueError as error:
            raise FatalJobError(f"{field}: {error}") from None
    if sha256 is not None and digest(data) != sha256:
        raise FatalJobError(f"{field}: the data's sha256 is not the {sha256[:12]} recorded at submit (changed since?)")
    try:
        return decode(data)
    except ValueError as error:
        raise FatalJobError(f"{field}: {error}") from None
