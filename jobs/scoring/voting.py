"""Majority vote over the answers extracted from n samples of one question.

Tie-break (deterministic, independent of dict ordering): among answers with the most
votes, the one whose first vote came earliest in sample order wins. Samples with no
extractable answer (None) cast no vote but still count in the agreement denominator,
so agreement = winner's votes / all samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Vote:
    winner: str | None  # None when no sample had an answer
    counts: dict[str, int]  # answer -> votes, in order of first appearance
    agreement: float  # winner's votes / number of samples (0.0 when no winner)
    winner_index: int | None  # first sample that voted for the winner


def majority_vote(answers: Sequence[str | None]) -> Vote:
    """The winning answer of `answers` (normalised strings, None for no answer)."""
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first_seen.setdefault(answer, index)
    if not counts:
        return Vote(winner=None, counts={}, agreement=0.0, winner_index=None)
    winner = min(counts, key=lambda a: (-counts[a], first_seen[a]))
    return Vote(winner=winner, counts=counts, agreement=counts[winner] / len(answers), winner_index=first_seen[winner])
