"""Majority vote over the answers extracted from n samples of one question, under a voting rule.

Tie-break (deterministic, independent of dict ordering): among answers with the most
votes, the one whose first vote came earliest in sample order wins.

Two rules, set per strategy (`self_consistency: {invalid_votes, normalise}`):
- invalid_votes `skip` (default): a sample with no extractable answer (None) casts no vote but
  still counts in the agreement denominator. `count`: it votes for INVALID, as lm-evaluation-harness's
  majority_vote filter counts its `[invalid]` fallback; when INVALID wins, the question has no answer.
- normalise `numeric` (default): votes are grouped by value (`1,000`, `$1000` and `1000.0` are one
  answer). `string`: by the number as written, as lm-eval compares its filtered strings (three answers).
  The strategy picks which text it hands in; this module only counts.

agreement = the winning vote's count / all samples (INVALID's share when it wins; 0.0 with no votes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

INVALID = "[invalid]"  # lm-eval's RegexFilter fallback, the vote of a sample without an answer under `count`


@dataclass(frozen=True)
class Vote:
    winner: str | None  # None when no sample had an answer, or INVALID won
    counts: dict[str, int]  # answer -> votes, in order of first appearance
    agreement: float  # winning vote's count / number of samples (0.0 when nobody voted)
    winner_index: int | None  # first sample that cast the winning vote


def majority_vote(answers: Sequence[str | None], *, invalid_votes: str = "skip") -> Vote:
    """The winning answer of `answers` (strings, None for no answer) under the `invalid_votes` rule."""
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer is None:
            if invalid_votes == "skip":
                continue
            answer = INVALID
        counts[answer] = counts.get(answer, 0) + 1
        first_seen.setdefault(answer, index)
    if not counts:
        return Vote(winner=None, counts={}, agreement=0.0, winner_index=None)
    winner = min(counts, key=lambda a: (-counts[a], first_seen[a]))
    return Vote(
        winner=None if winner == INVALID else winner,
        counts=counts,
        agreement=counts[winner] / len(answers),
        winner_index=first_seen[winner],
    )
