"""A question as every stage sees it: text, normalised reference answer, solution, complexity, wrong readings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.scoring.answers import reference_answer

# GSM8K marks every calculation of its reference solution as <<expr=value>>; their
# count is our measure of how many reasoning steps a question needs.
CALCULATION = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str  # normalised final answer (jobs.scoring.answers.reference_answer)
    solution: str  # reference solution text, `#### answer` line included
    complexity: int  # number of <<...>> calculations in the solution, at least 1
    # Synthetic problems that know their classic misreadings: (reading name, the answer it leads to),
    # normalised like `answer` and each different from it; empty for GSM8K and the classic chains.
    wrong_readings: tuple[tuple[str, str], ...] = ()


def count_calculations(solution: str) -> int:
    """Steps of a GSM8K solution: its <<...>> annotations, at least 1 (some solutions have none)."""
    return max(1, len(CALCULATION.findall(solution)))


def question_from_row(row: Mapping[str, Any], question_id: str) -> Question:
    """One GSM8K row (`question`, `answer`) as a Question; KeyError/TypeError/ValueError when malformed."""
    text, solution = row["question"], row["answer"]
    if not isinstance(text, str) or not isinstance(solution, str):
        raise TypeError("`question` and `answer` must be strings")
    return Question(
        id=question_id,
        question=text,
        answer=reference_answer(solution),
        solution=solution,
        complexity=count_calculations(solution),
    )
