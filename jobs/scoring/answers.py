"""GSM8K-style final-answer extraction and comparison.

A model's answer is the number on its last `#### N` line when it wrote one, else the
last number anywhere in its output: the lm-evaluation-harness "strict" and "flexible"
GSM8K filters folded into one function, since small models often drop the marker.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from jobs.scoring.thinking import answer_text

# A number as people write it in word problems: optional sign and `$`, thousands
# separators only in groups of three (so "12,34" is two numbers), optional decimals.
# The sign only counts when it does not follow a word or digit: "16-3" is 16 and 3.
NUMBER = re.compile(
    r"(?:(?<![\w.)])(?P<sign>[-+\u2212]))?\$?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
FINAL_MARKER = re.compile(r"####([^\n]*)")
# Tolerance for numeric equality: GSM8K answers are integers or short decimals, so
# anything closer than this is a formatting difference (18 vs 18.0), not a wrong answer.
ABS_TOLERANCE = 1e-6


def normalize_number(sign: str | None, digits: str) -> str:
    """Canonical text of a number: no commas, no trailing zeros, `18.00` -> `18`."""
    value = Decimal(digits.replace(",", ""))
    if sign in ("-", "\u2212"):
        value = -value
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _first_number(text: str) -> str | None:
    match = NUMBER.search(text)
    return normalize_number(match["sign"], match["digits"]) if match else None


def _last_number(text: str) -> str | None:
    matches = list(NUMBER.finditer(text))
    return normalize_number(matches[-1]["sign"], matches[-1]["digits"]) if matches else None


def extract_answer(text: str) -> str | None:
    """The normalised final answer of a GSM8K-style solution, or None when it has no number.

    Marker lines are tried from the last one back, because a model may echo the
    instruction ("end with #### <number>") before it answers. A reasoning model's
    thinking block is skipped: only the part after `</think>` answers (jobs.scoring.thinking).
    """
    text = answer_text(text)
    for marker in reversed(FINAL_MARKER.findall(text)):
        number = _first_number(marker)
        if number is not None:
            return number
    return _last_number(text)


def reference_answer(gsm8k_answer_field: str) -> str:
    """The normalised answer after `####` in a GSM8K `answer` field (its text when not numeric)."""
    markers: list[str] = FINAL_MARKER.findall(gsm8k_answer_field)  # one group: the text after ####
    if not markers:
        raise ValueError("a GSM8K answer field ends with a '#### <answer>' line")
    literal = markers[-1].strip()
    compact = literal.replace(" ", "")
    match = NUMBER.fullmatch(compact)
    if match:
        return normalize_number(match["sign"], match["digits"])
    return literal


def _as_decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        return None


def answers_match(pred: str | None, ref: str) -> bool:
    """True when the prediction equals the reference: numerically within tolerance, else as text."""
    if pred is None:
        return False
    pred_value, ref_value = _as_decimal(pred), _as_decimal(ref)
    if pred_value is not None and ref_value is not None:
        return math.isclose(float(pred_value), float(ref_value), rel_tol=1e-9, abs_tol=ABS_TOLERANCE)
    return pred.strip().lower() == ref.strip().lower()
