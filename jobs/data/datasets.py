"""Questions for an eval: GSM8K from a local JSONL or the hub, or a synthetic generator (classic or relations)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jobs.data import relations, synthetic
from jobs.data.question import Question, question_from_row
from jobs.data.shipped import Shipped, file_text
from jobs.errors import FatalJobError
from jobs.specs import DatasetSpec


def load_questions(spec: DatasetSpec, *, shipped: Shipped | None = None, field: str = "dataset") -> list[Question]:
    """The questions a dataset spec names, in source order, the first `spec.limit` of them.

    A local file is read from `shipped` (what its sweep shipped, by hash) when given: workers
    always pass it and so never open `spec.path` (jobs.data.shipped).
    """
    if spec.name == "synthetic" and spec.relations is not None:
        try:
            return relations.generate(spec.n, complexity=spec.complexity, seed=spec.seed, relations=spec.relations)
        except ValueError as error:  # relations too few for the complexity asked
            raise FatalJobError(f"dataset.relations: {error}") from None
    if spec.name == "synthetic":
        return synthetic.generate(spec.n, complexity=spec.complexity, seed=spec.seed)
    if spec.name == "curated":
        return _curated(spec, shipped, field)
    if spec.path:
        text = file_text(f"{field}.path", spec.path, spec.sha256, shipped)
        try:
            return parse_jsonl(text, stem=Path(spec.path).stem, limit=spec.limit)
        except ValueError as error:
            raise FatalJobError(f"{field}.path: {Path(spec.path).name}:{error}") from None
    return load_hub(str(spec.hub), spec.config, spec.split, limit=spec.limit)


def _curated(spec: DatasetSpec, shipped: Shipped | None, field: str) -> list[Question]:
    """A curated set (jobs.data.curation) by its content hash, which the runner resolved from its name or job."""
    if spec.sha256 is None or shipped is None:
        raise FatalJobError(f"{field}.curated: {spec.curated!r} was not resolved to a stored curated dataset")
    text = file_text(f"{field}.curated", "", spec.sha256, shipped)
    try:
        return parse_jsonl(text, stem=f"curated-{spec.sha256[:12]}")
    except ValueError as error:
        raise FatalJobError(f"{field}.curated: line {error}") from None


def load_jsonl(path: Path, *, limit: int | None = None) -> list[Question]:
    """GSM8K JSONL; ids are `<file stem>-<line index>` (0-based, blank lines keep their index)."""
    try:
        return parse_jsonl(path.read_text(encoding="utf-8"), stem=path.stem, limit=limit)
    except ValueError as error:
        raise ValueError(f"{path}:{error}") from None


def parse_jsonl(text: str, *, stem: str, limit: int | None = None) -> list[Question]:
    """GSM8K JSONL text, every line checked (the first `limit` questions kept); ValueError `<line>: why`."""
    questions: list[Question] = []
    # Split on \n only: str.splitlines would also split inside a JSON string at U+2028 and friends.
    for index, line in enumerate(text.split("\n")):
        if line.strip():
            question = _parse_line(stem, index, line)
            if limit is None or len(questions) < limit:
                questions.append(question)
    if not questions:
        raise ValueError("1: no questions: the file has no JSON line")
    return questions


def _parse_line(stem: str, index: int, line: str) -> Question:
    # The line number in the message is 1-based, as editors show it.
    try:
        row = json.loads(line)
        if not isinstance(row, dict):
            raise TypeError("each line must be a JSON object")
        question = question_from_row(row, f"{stem}-{index}")
    except KeyError as missing:
        raise ValueError(f"{index + 1}: missing field {missing}") from None
    except (json.JSONDecodeError, TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"{index + 1}: malformed GSM8K line: {error}") from None
    if not any(ch.isdigit() for ch in question.answer):
        raise ValueError(f"{index + 1}: the answer after '####' has no number: {question.answer[:40]!r}")
    return question


def load_hub(hub: str, config: str, split: str, *, limit: int | None = None) -> list[Question]:
    """GSM8K through `datasets.load_dataset`; ids are `<split>-<index>`, as the local split files'."""
    import datasets  # heavy; only the hub path needs it

    rows = datasets.load_dataset(hub, config, split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    return questions_from_rows(rows, prefix=split)


def questions_from_rows(rows: Iterable[Mapping[str, Any]], *, prefix: str) -> list[Question]:
    """Rows from the `datasets` library (hub or local JSON) as Questions with ids `<prefix>-<index>`."""
    questions = []
    for index, row in enumerate(rows):
        try:
            questions.append(question_from_row(row, f"{prefix}-{index}"))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{prefix} row {index}: malformed GSM8K row: {error!r}") from None
    return questions
