"""GSM8K-style final-answer extraction and comparison.

A model's answer is the number on its first `#### N` line when it wrote one, else the
last number anywhere in its output: the lm-evaluation-harness "strict" and "flexible"
GSM8K filters folded into one function, since small models often drop the marker
(jobs.scoring.lm_eval_compat computes lm-eval's own two scores beside it).

Before that, the output is cut at a next turn the model invented after answering (a new
`Question:` / `Q:` of a few-shot format, or a chat-turn marker), so the invented turn's
answer is never taken for this question's. Several `####` lines that disagree keep the
first (the committed answer) and mark the extraction ambiguous.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
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
# The start of a turn the model invents: a few-shot format's next question (lm-eval's gsm8k stops at
# `Question:`, gsm8k-cot at `Q:`) or a chat-turn marker, at the start of a line.
NEXT_TURN = re.compile(
    r"^[ \t]*(?:Question:|Q:|User:|Human:|<\|im_start\|>|<\|im_end\|>|<\|user\|>|<\|eot_id\|>"
    r"|<\|start_header_id\|>|<\|endoftext\|>|\[INST\])",
    re.MULTILINE,
)
# A stated final answer: only after one is a next turn cut off (a model may ask itself "Q: …?" mid-solution).
ANSWER_STATEMENT = re.compile(r"(?:####|answer is|answer:|\\boxed\{)\s*\$?\s*[-+\u2212]?\.?\d", re.IGNORECASE)
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


@dataclass(frozen=True)
class Extraction:
    """What extraction found in one output."""

    answer: str | None  # normalised (normalize_number); None when the output has no number
    literal: str | None  # the same number as written: sign, `$`, commas and decimals kept ("$1,000.0")
    ambiguous: bool = False  # several `####` lines with different numbers: the first was taken
    cut: bool = False  # the output was cut at a next turn the model invented after answering


def answer_part(text: str) -> tuple[str, bool]:
    """`text` up to the first next-turn marker that follows a stated answer; (kept text, whether it was cut)."""
    for turn in NEXT_TURN.finditer(text):
        if ANSWER_STATEMENT.search(text, 0, turn.start()):
            return text[: turn.start()], True
    return text, False


def extract(text: str) -> Extraction:
    """The final answer of a GSM8K-style solution (see the module doc).

    Marker lines without a number are skipped, because a model may echo the instruction
    ("end with #### <number>") before it answers. A reasoning model's thinking block is
    skipped: only the part after `</think>` answers (jobs.scoring.thinking).
    """
    kept, cut = answer_part(answer_text(text))
    marked = [m for m in (NUMBER.search(line) for line in FINAL_MARKER.findall(kept)) if m is not None]
    if marked:
        answers = {normalize_number(m["sign"], m["digits"]) for m in marked}
        return _found(marked[0], cut=cut, ambiguous=len(answers) > 1)
    numbers = list(NUMBER.finditer(kept))
    return _found(numbers[-1], cut=cut) if numbers else Extraction(None, None, cut=cut)


def _found(match: re.Match[str], *, cut: bool, ambiguous: bool = False) -> Extraction:
    answer = normalize_number(match["sign"], match["digits"])
    return Extraction(answer, match[0], ambiguous=ambiguous, cut=cut)


def extract_answer(text: str) -> str | None:
    """The normalised final answer of a GSM8K-style solution, or None when it has no number (see `extract`)."""
    return extract(text).answer


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
