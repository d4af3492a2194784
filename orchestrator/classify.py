"""`orchestrator classify FILE.jsonl`: failure labels for generations made anywhere (a harness run, a notebook).

One JSON object a line with `question`, `answer` (the reference solution ending `#### N`, or just
the number) and `output`; optional `truncated` (the output hit its token cap) and `wrong_readings`
({reading name: the answer it gives}). lm-evaluation-harness sample lines (`doc` with `question`
and `answer`, `resps`) are read as they are. Each line is labelled by jobs.scoring.taxonomy, as
an eval job labels its predictions (loops are found in the text: there are no token ids here).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from jobs.errors import InputError, one_line_errors
from jobs.scoring.answers import extract_answer, reference_answer
from jobs.scoring.taxonomy import LABELS, FailureLabel, classify, text_has_loop

SHAPE = "one JSON object a line with `question`, `answer` and `output`"


@one_line_errors()
def classify_command(
    file: Path = typer.Argument(..., help="JSONL: question, answer, output a line (`-` reads stdin)."),
) -> None:
    """Label why each wrong output fails (failure taxonomy): one JSON object a line on stdout."""
    report = classify_file(file)
    sys.stdout.writelines(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in report.classified)
    sys.stdout.flush()
    for number, problem in report.malformed:
        sys.stderr.write(f"line {number}: {problem}\n")
    sys.stderr.write(report.summary() + "\n")


class LineError(ValueError):
    """One line that cannot be classified; the rest of the file still is."""


@dataclass(frozen=True)
class Classified:
    line: int
    extracted: str | None
    failure: FailureLabel | None  # None: the output is right

    def to_json(self) -> dict[str, Any]:
        failure = self.failure
        return {
            "line": self.line,
            "label": failure.label if failure else None,
            "exact": failure.exact if failure else None,
            "evidence": failure.evidence if failure else None,
            "reading": failure.reading if failure else None,
            "extracted": self.extracted,
        }


@dataclass
class Report:
    classified: list[Classified] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong with it)

    def summary(self) -> str:
        wrong = [c.failure.label for c in self.classified if c.failure]
        counts = Counter(wrong)
        labels = ", ".join(f"{name} {counts[name]}" for name in LABELS if counts[name])
        right = len(self.classified) - len(wrong)
        text = f"classified {len(self.classified)} line(s): {right} right, {len(wrong)} wrong"
        text += f" ({labels})" if labels else ""
        return text + (f"; {len(self.malformed)} malformed line(s) skipped" if self.malformed else "")


def classify_file(path: Path) -> Report:
    """Every line of `path` classified, or reported as malformed; InputError when the file is not JSONL at all."""
    report = Report()
    objects = 0
    for number, raw in enumerate(_read(path).splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = _json_object(raw)
            objects += 1
            report.classified.append(classify_row(number, row))
        except LineError as error:
            report.malformed.append((number, str(error)))
    if not report.classified:
        first = f" (line {report.malformed[0][0]}: {report.malformed[0][1]})" if report.malformed else ": it is empty"
        kind = "has no line to classify" if objects else "is not JSONL"
        raise InputError(f"{path} {kind}{first}; expected {SHAPE}")
    return report


def classify_row(number: int, row: Mapping[str, Any]) -> Classified:
    """One line's label; LineError naming the field when the line lacks what it needs."""
    question, answer, output = _fields(row)
    reference = reference_answer(answer if "####" in answer else f"#### {answer}")
    if extract_answer(reference) != reference:
        raise LineError("`answer` is neither a solution ending `#### <number>` nor a number")
    extracted = extract_answer(output)
    failure = classify(
        question=question,
        reference=reference,
        output=output,
        extracted=extracted,
        truncated=_flag(row, "truncated"),
        loop=text_has_loop(output),
        wrong_readings=_readings(row),
    )
    return Classified(line=number, extracted=extracted, failure=failure)


def _read(path: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not JSONL: not UTF-8 text; expected {SHAPE}") from None


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LineError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise LineError(f"a JSON {type(value).__name__}, not an object")
    return value


def _fields(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """(question, answer, output) of a line: ours, or an lm-evaluation-harness sample."""
    if "doc" in row and "output" not in row and isinstance(row["doc"], dict):
        row = {**row["doc"], "answer": row["doc"].get("answer", row.get("target")), "output": _first_response(row)}
    missing = [name for name in ("question", "answer", "output") if row.get(name) is None]
    if missing:
        raise LineError(f"missing {', '.join(f'`{name}`' for name in missing)}")
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise LineError("`answer` must be a string or a number")
    for name in ("question", "output"):
        if not isinstance(row[name], str):
            raise LineError(f"`{name}` must be a string")
    return row["question"], str(answer), row["output"]


def _first_response(sample: Mapping[str, Any]) -> Any:
    # lm-evaluation-harness keeps each request's responses as a list: resps = [[text, ...], ...].
    found = sample.get("resps")
    while isinstance(found, list) and found:
        found = found[0]
    return found if isinstance(found, str) else None


def _flag(row: Mapping[str, Any], name: str) -> bool:
    value = row.get(name, False)
    if not isinstance(value, bool):
        raise LineError(f"`{name}` must be true or false")
    return value


def _readings(row: Mapping[str, Any]) -> dict[str, str] | None:
    readings = row.get("wrong_readings")
    if readings is None:
        return None
    if not isinstance(readings, dict) or not all(isinstance(v, str | int | float) for v in readings.values()):
        raise LineError("`wrong_readings` must map reading names to answers")
    return {str(name): str(answer) for name, answer in readings.items()}
