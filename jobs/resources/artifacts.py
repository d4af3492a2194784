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
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != COMPLETE):
        data = path.read_bytes()
        digest.update(path.relative_to(local_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(data).digest())
        size += len(data)
    return size, digest.hexdigest()


def upload_dir(local_dir: Path, uri: str) -> Stored:
    """Copy `local_dir` to `uri` (replacing what was there) and mark it complete."""
    size, sha = directory_digest(local_dir)
    fs, path = url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    for file in sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != COMPLETE):
        target = f"{path}/{file.relative_to(local_dir).as_posix()}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.put_file(str(file), target)
    with fs.open(f"{path}/{COMPLETE}", "w") as marker:
        json.dump({"size_bytes": size, "sha256": sha}, marker)
    return Stored(uri=uri, size_bytes=size, sha256=sha)


def is_complete(uri: str) -> bool:
    fs, path = url_to_fs(uri)
    return bool(fs.exists(f"{path}/{COMPLETE}"))


def fetch_dir(uri: str, cache_root: str | Path | None = None) -> Path:
    """A local directory holding `uri`'s files: the directory itself when local, else a
    download cached under `cache_root` (re-used when its digest still matches the stored marker);
    without a `cache_root` (scripts, tests), a new temporary directory that caches nothing."""
    fs, path = url_to_fs(uri)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        return Path(path)
    if cache_root is None:
        cache_root = tempfile.mkdtemp(prefix="reasonfleet-artifact-")
    if not fs.exists(f"{path}/{COMPLETE}"):
        raise FatalJobError(f"artifact {uri} is missing or was not completely uploaded")
    with fs.open(f"{path}/{COMPLETE}", "r") as marker:
        expected = json.load(marker)["sha256"]
    local = Path(cache_root) / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if local.is_dir() and directory_digest(local)[1] == expected:
        return local
    local.mkdir(parents=True, exist_ok=True)
    for remote in fs.find(path):
        name = remote[len(path.rstrip("/")) + 1 :] if remote.startswith(path.rstrip("/")) else remote.rsplit("/", 1)[-1]
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(target))
    if directory_digest(local)[1] != expected:
        # A broken download, or a store changed underneath: another attempt downloads it again.
        raise RetryableError(f"artifact {uri}: downloaded files do not match their recorded sha256")
    return local
