"""The contamination check at submit: every local train source of a sweep against its local eval set.

Measured on the bytes the sweep ships (jobs.data.contamination says how); sources known only at run
time (a hub dataset, the synthetic generator) are not measured. A curate section's source counts as
a train source: the curated set is a subset of it, so a clean source gives a clean curated set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from jobs.data.contamination import Overlap, overlap
from jobs.errors import SweepError
from orchestrator.sweep import SweepSpec, load_sweep_and_data


def load_sweep_checked(path: str | Path) -> tuple[SweepSpec, dict[str, bytes], list[Overlap]]:
    """load_sweep_and_data, and the train/eval overlap measured on its shipped data; a contaminated pair is
    refused (SweepError naming both fields, with counts and examples) unless the sweep sets allow_overlap."""
    sweep, data = load_sweep_and_data(path)
    overlaps = sweep_overlaps(sweep, data)
    if not sweep.allow_overlap:
        refuse_overlap(overlaps)
    return sweep, data, overlaps


def sweep_overlaps(sweep: SweepSpec, data: dict[str, bytes]) -> list[Overlap]:
    """One Overlap per local train source, against the sweep's eval file; [] without a local eval file."""
    if not (sweep.dataset.path and sweep.dataset.sha256 in data):
        return []
    eval_questions = _questions(data[str(sweep.dataset.sha256)], sweep.dataset.path, limit=sweep.dataset.limit)
    return [
        overlap(texts(), eval_questions, train_field=field, eval_field="dataset.path")
        for field, texts in _train_sources(sweep, data)
    ]


def refuse_overlap(overlaps: list[Overlap]) -> None:
    dirty = [o for o in overlaps if o.contaminated]
    if dirty:
        lines = [o.describe() for o in dirty]
        raise SweepError(
            "train/eval contamination\n" + "\n".join(f"  {line}" for line in lines)
            + "\n  set allow_overlap: true to submit anyway (the overlap is recorded with the sweep)"
        )


def _train_sources(sweep: SweepSpec, data: dict[str, bytes]) -> list[tuple[str, Callable[[], list[str]]]]:
    from jobs.data.shipped import decode
    from jobs.training.data import parse_traces

    sources: list[tuple[str, Callable[[], list[str]]]] = []
    train = sweep.train
    for field, source in train.source_fields() if train else []:
        if source is not None and source.path and source.sha256 in data:
            path, sha = source.path, str(source.sha256)
            sources.append((f"{field}.path", partial(_questions, data[sha], path, limit=None)))
    if train is not None and train.trace_file and train.trace_sha256 in data:
        trace_file, trace_sha = train.trace_file, str(train.trace_sha256)
        sources.append((
            "train.trace_file",
            lambda: [t.question for t in parse_traces(decode(data[trace_sha]), stem=Path(trace_file).stem)],
        ))
    curate = sweep.curate
    if curate is not None and curate.source.path and curate.source.sha256 in data:
        curate_path, curate_sha = curate.source.path, str(curate.source.sha256)
        sources.append(("curate.source.path", lambda: _items(data[curate_sha], curate_path)))
    teach = sweep.traces
    if teach is not None and teach.source.path and teach.source.sha256 in data:
        # A trace set is a subset of its source's questions, as a curated set is.
        teach_path, teach_sha = teach.source.path, str(teach.source.sha256)
        sources.append(("traces.source.path", partial(_questions, data[teach_sha], teach_path, limit=None)))
    return sources


def _items(data: bytes, path: str) -> list[str]:
    from jobs.data.curation import parse_source
    from jobs.data.shipped import decode

    return [item.question for item in parse_source(decode(data), stem=Path(path).stem)]


def _questions(data: bytes, path: str, *, limit: int | None) -> list[str]:
    # Whole source files: a train job shuffles before it cuts, so any line may be learned.
    from jobs.data.datasets import parse_jsonl
    from jobs.data.shipped import decode

    return [q.question for q in parse_jsonl(decode(data), stem=Path(path).stem, limit=limit)]
