"""The curate job: read the source, run the filters (jobs.data.curation), store the dataset as an artifact.

The artifact is a directory `curated/<name>/<sha256>/` in the artifact store holding `data.jsonl` and
`manifest.json` (counts after each filter, sources, baselines' run ids, seed, the JSONL's sha256):
content-addressed, so the same source, settings and baselines' answers give the same path and hash.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.data.curation import Curated, Item, curate, manifest, parse_source
from jobs.data.shipped import Shipped, file_text
from jobs.errors import FatalJobError
from jobs.specs import CurateJobSpec, DatasetSpec


@dataclass(frozen=True)
class CurateOutcome:
    curated: Curated
    manifest: dict[str, Any]
    uri: str | None


def load_items(source: DatasetSpec, *, shipped: Shipped | None) -> list[Item]:
    """The source's items: a local file parsed leniently (the quality filter counts malformed answers)."""
    from jobs.data.datasets import load_questions

    if source.path:
        text = file_text("curate.source.path", source.path, source.sha256, shipped)
        try:
            return parse_source(text, stem=Path(source.path).stem)[: source.limit]
        except ValueError as error:
            raise FatalJobError(f"curate.source.path: {Path(source.path).name}:{error}") from None
    return [Item(id=q.id, question=q.question, solution=q.solution) for q in load_questions(source, shipped=shipped)]


def run(
    spec: CurateJobSpec,
    *,
    solved: set[str] | None,
    artifacts_root: str | None,
    shipped: Shipped | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CurateOutcome:
    """`solved`: question ids a baseline answered right (None: no difficulty filter). The manifest names the
    baselines by their eval jobs' spec hashes: the same runs on any database, so the manifest is reproducible."""
    params = spec.curate
    items = load_items(params.source, shipped=shipped)
    curated = curate(
        items, target=params.target, seed=params.seed, quality_filter=params.quality, solved=solved,
        min_density=params.min_density, top_k=params.top_k, progress=progress,
    )
    settings = params.model_dump(mode="json", exclude={"name", "source", "baselines", "seed"})
    about = manifest(
        curated, name=params.name, sources=[params.source.label], baselines=spec.baselines, seed=params.seed,
        settings=settings,
    )
    uri = (
        store_dataset("curated", str(about["name"]), curated.sha256, curated.jsonl, about, artifacts_root)
        if artifacts_root else None
    )
    return CurateOutcome(curated=curated, manifest=about, uri=uri)


def store_dataset(kind: str, name: str, sha256: str, jsonl: bytes, about: dict[str, Any], artifacts_root: str) -> str:
    """A built dataset (`curated` or `traces`) in the artifact store, content-addressed:
    <root>/<kind>/<name>/<sha256>/{data.jsonl, manifest.json}; its URI."""
    from jobs.resources.artifacts import join, normalise_root, upload_dir

    uri = join(normalise_root(artifacts_root), kind, name, sha256)
    with tempfile.TemporaryDirectory(prefix=f"{kind}-") as tmp:
        (Path(tmp) / "data.jsonl").write_bytes(jsonl)
        (Path(tmp) / "manifest.json").write_text(json.dumps(about, indent=2, sort_keys=True), encoding="utf-8")
        return upload_dir(Path(tmp), uri).uri
