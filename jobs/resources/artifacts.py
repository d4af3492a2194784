"""The artifact store: adapters and checkpoints under one fsspec URL root.

A local directory by default (settings `REASONFLEET_ARTIFACTS`); any fsspec URL
(`s3://bucket/rf` for MinIO, `memory://` in tests) for a fleet, so that a worker on
another PC fetches what another worker trained. Directories are uploaded file by file
and a marker file is written last, so a half-written upload is never taken as whole.
Where downloads are cached is the caller's to say (the worker passes
`REASONFLEET_ARTIFACT_CACHE` from its settings): `jobs/` reads no environment.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from jobs.errors import FatalJobError, RetryableError

COMPLETE = "_COMPLETE.json"  # written last: its presence means the upload finished


@dataclass(frozen=True)
class Stored:
    uri: str
    size_bytes: int
    sha256: str  # over the files' names and contents, in name order


def normalise_root(root: str) -> str:
    """A URL for `root`; a plain path becomes absolute so other processes find it too."""
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def directory_digest(local_dir: Path) -> tuple[int, str]:
    """(total bytes, sha256) of the files in `local_dir`, names included, marker excluded."""
    digest, size = hashlib.sha256(), 0
    for name, file_sha in file_digests(local_dir).items():
        digest.update(name.encode() + b"\0")
        digest.update(bytes.fromhex(file_sha))
        size += (local_dir / name).stat().st_size
    return size, digest.hexdigest()


def file_digests(local_dir: Path) -> dict[str, str]:
    """sha256 of each file in `local_dir` (marker excluded), by relative name, in name order."""
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != COMPLETE)
    return {p.relative_to(local_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


# --------------------------------------------------------------------------- a store that is away

# Errors that mean "the store cannot be reached now", by class name so that jobs/ needs no botocore or
# aiohttp import: a job that meets one is retried (RetryableError), not failed.
UNREACHABLE = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
})


def is_unreachable(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in UNREACHABLE for cls in type(error).__mro__)


def without_userinfo(text: str) -> str:
    """`scheme://user:secret@host` -> `scheme://***@host`: an error naming a store never carries its keys."""
    return re.sub(r"://[^/@\s]+@", "://***@", text)


@contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """Turn "the store cannot be reached" into a RetryableError that names the store and never its keys."""
    try:
        yield
    except (FatalJobError, RetryableError):
        raise
    except Exception as error:
        if not is_unreachable(error):
            raise
        first_line = (str(error).splitlines() or [""])[0][:300]
        detail = without_userinfo(f"{type(error).__name__}: {first_line}")
        raise RetryableError(f"artifact store unreachable for {without_userinfo(uri)}: {detail}") from None


# --------------------------------------------------------------------------- upload and download


def upload_dir(local_dir: Path, uri: str) -> Stored:
    """Copy `local_dir` to `uri` (replacing what was there) and mark it complete."""
    size, sha = directory_digest(local_dir)
    with store_errors(uri):
        fs, path = url_to_fs(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        for file in sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != COMPLETE):
            target = f"{path}/{file.relative_to(local_dir).as_posix()}"
            fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(file), target)
        with fs.open(f"{path}/{COMPLETE}", "w") as marker:
            json.dump({"size_bytes": size, "sha256": sha, "files": file_digests(local_dir)}, marker)
    return Stored(uri=uri, size_bytes=size, sha256=sha)


def is_complete(uri: str) -> bool:
    with store_errors(uri):
        fs, path = url_to_fs(uri)
        return bool(fs.exists(f"{path}/{COMPLETE}"))


def fetch_dir(uri: str, cache_root: str | Path | None = None) -> Path:
    """A local directory holding `uri`'s files: the directory itself when local, else a
    download cached under `cache_root` (re-used when its digest still matches the stored marker);
    without a `cache_root` (scripts, tests), a new temporary directory that caches nothing.

    A download is checked against the sha256 recorded at upload; a mismatch is downloaded once
    more (a broken transfer), and a second mismatch is a FatalJobError naming the files: the
    stored object itself is corrupt, and retrying would read the same bytes.
    """
    with store_errors(uri):
        fs, path = url_to_fs(uri)
        if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
            return Path(path)
        if cache_root is None:
            cache_root = tempfile.mkdtemp(prefix="reasonfleet-artifact-")
        if not fs.exists(f"{path}/{COMPLETE}"):
            raise FatalJobError(f"artifact {uri} is missing or was not completely uploaded")
        with fs.open(f"{path}/{COMPLETE}", "r") as marker:
            expected = json.load(marker)
        local = Path(cache_root) / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if local.is_dir() and directory_digest(local)[1] == expected["sha256"]:
            return local
        for _ in range(2):
            _download(fs, path, local)
            if directory_digest(local)[1] == expected["sha256"]:
                return local
    raise FatalJobError(_corruption(uri, local, expected))


def _download(fs: Any, path: str, local: Path) -> None:
    if local.exists():
        shutil.rmtree(local)  # nothing stale survives beside the fresh files
    local.mkdir(parents=True)
    prefix = path.rstrip("/") + "/"
    for remote in fs.find(path):
        name = remote[len(prefix) :] if remote.startswith(prefix) else remote.rsplit("/", 1)[-1]
        if name == COMPLETE:
            continue
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(target))


def _corruption(uri: str, local: Path, expected: dict[str, Any]) -> str:
    recorded: dict[str, str] = expected.get("files") or {}  # markers written before per-file digests have none
    got = file_digests(local)
    bad = sorted(name for name in recorded.keys() | got.keys() if recorded.get(name) != got.get(name))
    which = f" ({', '.join(bad[:5])} differ from the recorded sha256)" if recorded and bad else ""
    return (
        f"artifact {without_userinfo(uri)} is corrupt: its files do not match the sha256 recorded at upload{which}; "
        "the stored copy was changed or damaged, re-run the job that produced it"
    )
