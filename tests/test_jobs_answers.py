"""Answer extraction and comparison: edge cases, and every reference answer of GSM8K test."""

from __future__ import annotations

import json

import pytest

from jobs.scoring.answers import answers_match, extract, extract_answer, reference_answer
from tests.model_fixtures import require_gsm8k


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", "18"),
        ("#### 1,000", "1000"),
        ("#### 1,450,000", "1450000"),
        ("#### $18.00", "18"),
        ("####18", "18"),
        ("#### -3", "-3"),
        ("#### +5", "5"),
        ("#### 0.50", "0.5"),
        ("#### .5", "0.5"),
        ("The answer is 42.", "42"),
        ("So she pays $1,234.50 in total.", "1234.5"),
        ("16-3-4=9", "9"),  # minus signs between numbers are operators, not signs
        ("The temperature drops to -3 degrees.", "-3"),
        ("12,34", "34"),  # not a thousands separator: two numbers
        ("#### 7\nThen I thought 99 more words.", "7"),  # the marker beats a later number
        ("End with `#### <number>`.\nShe has 5 left. #### 5", "5"),  # last usable marker
        ("#### <number>\nShe has 6 apples", "6"),  # markers without a number fall back
        ("#### 3\n#### 4", "3"),  # the first committed answer wins (issue 18; recorded as ambiguous)
        ("The answer is 42.\n\nQuestion: Tom has 3 cats. Answer: 7", "42"),  # an invented next turn is cut
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "answer", "ambiguous", "cut"),
    [
        ("The answer is 42.\n\nQuestion: Tom has 3 cats and 4 dogs. How many pets?\nAnswer: 7", "42", False, True),
        ("#### 16\n#### 17", "16", True, False),  # the first is the committed answer; the disagreement is recorded
        ("#### 16\n#### 16.0", "16", False, False),  # the same number twice is no ambiguity
        ("3 + 4 = 7\n#### 7\nQ: Ann has 2 pens. How many?\nA: #### 2", "7", False, True),
        ("#### 5\n<|im_start|>user\nNext one: 9 + 9?", "5", False, True),  # a chat-turn marker
        ("The answer is 12.\nUser: and now 3 more?\n15", "12", False, True),
        # No stated answer before it: a model asking itself sub-questions is not cut.
        ("Q: How many eggs are left? A: 16 - 3 = 13\nQ: How much money? A: 13 * 2 = 26", "26", False, False),
        ("Question: Janet has 16 eggs.\nShe sells 9 for $2: 18", "18", False, False),  # a restated question first
        ("I will say Question: 3?\n#### 4", "4", False, False),  # markers count at a line's start only
    ],
)
def test_extraction_cuts_invented_turns_and_flags_disagreeing_markers(
    text: str, answer: str, ambiguous: bool, cut: bool
) -> None:
    found = extract(text)
    assert (found.answer, found.ambiguous, found.cut) == (answer, ambiguous, cut)


@pytest.mark.parametrize(
    ("pred", "ref", "same"),
    [
        ("18", "18", True),
        ("18.0", "18", True),
        ("1000", "1,000", True),
        ("0.5", "0.50", True),
        ("-3", "3", False),
        ("17", "18", False),
        ("18.001", "18", False),
        (None, "18", False),
        ("yes", "Yes", True),  # non-numeric references compare as text
    ],
)
def test_answers_match(pred: str | None, ref: str, same: bool) -> None:
    assert answers_match(pred, ref) is same


def test_reference_answer_needs_a_marker() -> None:
    with pytest.raises(ValueError, match="####"):
        reference_answer("no final line")


def _literal_normalised(answer_field: str) -> str:
    # Written independently of jobs.scoring.answers: what a human reads after `####`.
    literal = answer_field.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
    return literal


def test_every_gsm8k_test_answer_extracts_to_itself() -> None:
    path = require_gsm8k()
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) > 1000
    for index, row in enumerate(rows):
        field = row["answer"]
        reference = reference_answer(field)
        assert extract_answer(field) == reference, f"line {index + 1}: {field[-40:]!r}"
        assert reference == _literal_normalised(field), f"line {index + 1}"
        assert answers_match(extract_answer(field), reference)


def test_greedy_records_the_extraction_flags() -> None:
    from jobs.data.question import question_from_row
    from jobs.generation.rows import Generation
    from jobs.strategies.greedy import score

    question = question_from_row({"question": "How many?", "answer": "#### 16"}, "q0")
    scored = score(question, Generation(text="#### 16\n#### 17", output_tokens=4, truncated=False, latency_s=0.1))
    assert (scored.extracted_answer, scored.correct, scored.details.get("ambiguous")) == ("16", True, True)
    plain = score(question, Generation(text="#### 16", output_tokens=2, truncated=False, latency_s=0.1))
    assert "ambiguous" not in plain.details and "cut" not in plain.details
