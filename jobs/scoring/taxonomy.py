"""Why an answer fails: one label for every wrong prediction, with its evidence.

The rules, tried in this order (the first that holds is the label; README "Failure taxonomy"):

1. format        no number could be extracted from the output
2. truncated     the output hit its token cap
3. loop          the output repeats a block back to back (jobs.scoring.repetition)
4. arithmetic    a calculation the output states has a wrong result (jobs.scoring.calculations)
5. relationship  (exact) the answer is one of the problem's known wrong readings
6. unit          the answer is the right quantity at another scale (× or ÷ one of SCALES)
7. copied_number the answer is a number of the question, returned unchanged
8. relationship  (heuristic) every stated calculation is right, yet the answer is wrong
9. other         none of the above (e.g. a bare wrong number, no calculation shown)

A known wrong reading is tried before `unit` and `copied_number` because a match is certain
and they are guesses. `exact` is True only for such a match; every other label is the rule's
best guess at the cause.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from jobs.scoring.answers import NUMBER, answers_match, normalize_number
from jobs.scoring.calculations import Calculation, agrees, decimals_of, stated_calculations
from jobs.scoring.repetition import has_repetition_loop
from jobs.scoring.thinking import split_thinking

LABELS: tuple[str, ...] = (
    "format",
    "truncated",
    "loop",
    "arithmetic",
    "unit",
    "copied_number",
    "relationship",
    "other",
)
# Factors between units a word problem mixes, and the conversions each one stands for.
SCALES: tuple[tuple[int, str], ...] = (
    (60, "seconds/minutes/hours"),
    (100, "cents/dollars, a missed percent conversion, or centimetres/metres"),
    (1000, "grams/kilograms, metres/kilometres, or thousands"),
    (12, "months/years, inches/feet, or dozens"),
    (7, "days/weeks"),
    (24, "hours/days"),
    (52, "weeks/years"),
)
UNIT_TOLERANCE = Fraction(1, 100)  # a rounded answer at another scale must be within 1% of the converted value
# Small numbers questions spell out ("She eats three for breakfast").
_UNITS_AND_TEENS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",
)
_TENS = {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90"}
NUMBER_WORDS = {word: str(value) for value, word in enumerate(_UNITS_AND_TEENS)} | _TENS
_WORD = re.compile(r"[A-Za-z]+")
# Loop detection on text: digits one by one, words, punctuation, the way tokenizers split them.
_TEXT_PIECE = re.compile(r"\d|[^\W\d]+|[^\w\s]")
MAX_EVIDENCE = 3  # wrong calculations quoted as evidence


@dataclass(frozen=True)
class FailureLabel:
    label: str  # one of LABELS
    exact: bool  # True only when the answer matched a known wrong reading
    evidence: str  # what decided it: the wrong calculation, the reading, the scale...
    reading: str | None = None  # the known wrong reading the answer matched


def classify(
    *,
    question: str,
    reference: str,
    output: str,
    extracted: str | None,
    truncated: bool,
    loop: bool,
    wrong_readings: Mapping[str, str] | None = None,
) -> FailureLabel | None:
    """The failure label of one prediction, or None when `extracted` matches `reference`.

    `reference` is the normalised reference answer (jobs.scoring.answers.reference_answer),
    `extracted` the prediction's final answer, `truncated` whether the output hit its token
    cap, `loop` whether a repetition loop was detected, `wrong_readings` the problem's known
    wrong readings (name -> the answer that reading gives).
    """
    if answers_match(extracted, reference):
        return None
    if truncated and not split_thinking(output).closed:  # no answer part yet: the cap, not the format, failed it
        return FailureLabel("truncated", False, "hit the token cap inside the thinking block")
    if extracted is None:
        return FailureLabel("format", False, "no number in the output")
    if truncated:
        return FailureLabel("truncated", False, f"hit the token cap; last number {extracted}")
    if loop:
        return FailureLabel("loop", False, "the output repeats a block back to back")
    calculations = stated_calculations(output)
    return (
        _arithmetic(calculations)
        or _known_reading(extracted, wrong_readings or {})
        or _unit(extracted, reference)
        or _copied(extracted, question)
        or _relationship(calculations, extracted, reference)
    )


def text_has_loop(text: str) -> bool:
    """jobs.scoring.repetition's loop test on text (digits, words and punctuation as the tokens)."""
    ids: dict[str, int] = {}
    return has_repetition_loop([ids.setdefault(piece, len(ids)) for piece in _TEXT_PIECE.findall(text)])


def count_labels(labels: Iterable[FailureLabel | None]) -> dict[str, int]:
    """Label -> how many of `labels` carry it, in LABELS order, labels that no answer carries left out
    (so `{}` means no wrong answer); None, a right answer, is not counted."""
    counts = Counter(found.label for found in labels if found is not None)
    return {name: counts[name] for name in LABELS if counts[name]}


def _arithmetic(calculations: list[Calculation]) -> FailureLabel | None:
    wrong = [c for c in calculations if not c.correct]
    if not wrong:
        return None
    more = f" (and {len(wrong) - MAX_EVIDENCE} more)" if len(wrong) > MAX_EVIDENCE else ""
    return FailureLabel("arithmetic", False, "; ".join(str(c) for c in wrong[:MAX_EVIDENCE]) + more)


def _known_reading(extracted: str, wrong_readings: Mapping[str, str]) -> FailureLabel | None:
    for name, answer in wrong_readings.items():
        if answers_match(extracted, answer):
            return FailureLabel("relationship", True, f"answer {extracted} is the {name} reading", reading=name)
    return None


def _unit(extracted: str, reference: str) -> FailureLabel | None:
    answer, truth = _fraction(extracted), _fraction(reference)
    if answer is None or truth is None or truth == 0 or answer == 0:
        return None
    decimals = decimals_of(extracted)
    for factor, meaning in SCALES:
        for scaled, sign in ((truth * factor, "×"), (truth / factor, "÷")):
            if _rounds_to(scaled, answer, decimals):
                return FailureLabel("unit", False, f"answer {extracted} = {reference} {sign} {factor} ({meaning})")
    return None


def _rounds_to(scaled: Fraction, answer: Fraction, decimals: int) -> bool:
    # The other scale's value itself, or rounded to the decimals the answer shows and within 1% of it:
    # 160 minutes are 2.67 hours, but 20 days are not 3 weeks (a whole number stands for an exact count)
    # and 35 hours are not 1.5 days (1.46: a coarse rounding matches too much by chance).
    if scaled.denominator == 1 or decimals == 0:
        return scaled == answer
    close = abs(answer - scaled) <= abs(scaled) * UNIT_TOLERANCE
    return close and agrees(scaled, answer, decimals, slack=Fraction(1, 2))


def _copied(extracted: str, question: str) -> FailureLabel | None:
    for number in _question_numbers(question):
        if answers_match(extracted, number):
            return FailureLabel("copied_number", False, f"answer {extracted} is the question's {number}")
    return None


def _relationship(calculations: list[Calculation], extracted: str, reference: str) -> FailureLabel:
    if not calculations:
        return FailureLabel("other", False, f"answer {extracted}, reference {reference}; no calculation stated")
    return FailureLabel(
        "relationship",
        False,
        f"{len(calculations)} stated calculation(s), all right (last: {calculations[-1]});"
        f" answer {extracted}, reference {reference}",
    )


def _question_numbers(question: str) -> list[str]:
    numbers = [normalize_number(m["sign"], m["digits"]) for m in NUMBER.finditer(question)]
    words = [NUMBER_WORDS[w.lower()] for w in _WORD.findall(question) if w.lower() in NUMBER_WORDS]
    return list(dict.fromkeys(numbers + words))


def _fraction(text: str) -> Fraction | None:
    try:
        return Fraction(Decimal(text.replace(",", "").strip()))
    except (InvalidOperation, ValueError, OverflowError):
        return None

