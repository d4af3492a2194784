"""Which model sources are local files or directories: the sweep checks them at submit, and a worker started
with `--models-dir` loads local ones only from under that directory (hub ids and installed packages stay)."""

from __future__ import annotations

import os
from pathlib import Path

from jobs.specs import ModelSpec


def looks_local(model_id: str) -> bool:
    """A model.id that names a directory on this machine rather than a hub repo (`owner/name`)."""
    return model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().exists()


def local_model_path(model: ModelSpec) -> Path | None:
    """The file or directory a model spec loads from this machine, or None (hub id, installed package)."""
    if model.path:
        return Path(model.path).expanduser()
    if model.id and looks_local(model.id):
        return Path(model.id).expanduser()
    return None


def outside(path: Path, allowed: Path) -> bool:
    """True when `path`, links and `..` resolved, is not under `allowed` (resolved the same way)."""
    real, root = Path(os.path.realpath(path)), Path(os.path.realpath(allowed.expanduser()))
    return real != root and root not in real.parents
