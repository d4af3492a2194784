"""Questions for an eval: GSM8K from a local JSONL or the hub, or a synthetic generator (classic or relations)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jobs.data import relations, synthetic
from jobs.data.question import Question, question_from_row
from jobs.errors import FatalJobError
from jobs.specs import DatasetSpec


def load_questions(spec: DatasetSpec) -> list[Question]:
    """The questions a dataset spec names, in source order, the first `spec.limit` of them."""
    if spec.name == "synthetic" and spec.relations is not None:
        try:
            return relations.generate(spec.n, complexity=spec.complexity, seed=spec.seed, relations=spec.relations)
        except ValueError as error:  # relations too few for the complexity asked
            raise FatalJobError(f"dataset.relations: {error}") from None
    if spec.name == "synthetic":
        return synthetic.generate(spec.n, complexity=spec.complexity, seed=spec.seed)
    if spec.path:
        return load_jsonl(Path(spec.path), limit=spec.limit)
    return load_hub(str(spec.hub), spec.config, spec.split, limit=spec.limit)


def load_jsonl(path: Path, *, limit: int | None = None) -> list[Question]:
    """GSM8K JSONL; ids are `<file stem>-<line index>` (0-based, blank lines keep their index)."""
    questions: list[Question] = []
    with path.open(encoding="utf-8") as lines:
        for index, line in enumerate(lines):
            if limit is not None and len(questions) >= limit:
                break
            if line.strip():
                questions.append(_parse_line(path, index, line))
    return questions


def _parse_line(path: Path, index: int, line: str) -> Question:
    # The line number in the message is 1-based, as editors show it.
    try:
        row = json.loads(line)
        if not isinstance(row, dict):
            raise TypeError("each line must be a JSON object")
        return question_from_row(row, f"{path.stem}-{index}")
    except KeyError as missing:
        raise ValueError(f"{path}:{index + 1}: missing field {missing}") from None
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise ValueError(f"{path}:{index + 1}: malformed GSM8K line: {error}") from None


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
