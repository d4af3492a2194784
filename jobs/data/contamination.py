"""Train/eval contamination: how many eval questions a training source already contains.

Two measures, on normalised text (lower case, every run of characters other than letters and
digits a single space):

- **exact**: an eval question whose normalised text equals a training question's;
- **n-gram**: the fraction of an eval question's word N-grams (N = 13, the GPT-3 paper's and
  lm-evaluation-harness' decontamination length) that occur anywhere in the training source;
  a question shorter than N words counts as one N-gram, itself.

An eval question is *contaminated* when it is an exact match or at least OVERLAP_THRESHOLD
(80 %) of its 13-grams occur in the source. "Any shared 13-gram" (GPT-3's rule for dirty
documents) is too strict for GSM8K questions, which reuse phrasings: GSM8K train and test share
a 13-gram in 3 of 1,319 test questions (the "stamps … snowflake design … truck design" family),
the most covered test question has 54 % of its 13-grams in train, and none matches exactly;
a copied question scores 100 %, and a copy with a changed number keeps most of its 13-grams.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

NGRAM = 13
OVERLAP_THRESHOLD = 0.8
EXAMPLES = 3  # contaminated questions quoted in a refusal

_NON_WORD = re.compile(r"[^0-9a-z]+")


def words(text: str) -> list[str]:
    """Lower-case words and numbers: punctuation, spacing and case never hide a copy."""
    return _NON_WORD.sub(" ", text.lower()).split()


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class Overlap:
    """One train source against one eval set."""

    train: str  # the sweep field that names the training source
    eval: str  # the sweep field that names the eval set
    eval_n: int
    exact: int  # eval questions whose normalised text is a training question
    any_ngram: int  # eval questions sharing at least one 13-gram with the source
    contaminated: int  # exact, or at least OVERLAP_THRESHOLD of their 13-grams in the source
    max_fraction: float  # the highest share of one eval question's 13-grams found in the source
    examples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.contaminated / self.eval_n if self.eval_n else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "train": self.train, "eval": self.eval, "eval_n": self.eval_n, "exact": self.exact,
            "any_ngram": self.any_ngram, "contaminated": self.contaminated, "rate": round(self.rate, 6),
            "max_fraction": round(self.max_fraction, 4), "ngram": NGRAM, "threshold": OVERLAP_THRESHOLD,
        }

    def describe(self) -> str:
        quoted = "; ".join(repr(q[:80]) for q in self.examples)
        return (
            f"{self.train} overlaps {self.eval}: {self.contaminated} of {self.eval_n} eval questions "
            f"({self.exact} exact, the rest with >= {OVERLAP_THRESHOLD:.0%} of their {NGRAM}-grams in the "
            f"training source), e.g. {quoted}"
        )


def overlap(train: Iterable[str], evals: Sequence[str], *, train_field: str, eval_field: str) -> Overlap:
    """How much of `evals` (question texts) the training texts contain."""
    exact_texts: set[str] = set()
    source_grams: set[tuple[str, ...]] = set()
    for text in train:
        tokens = words(text)
        exact_texts.add(" ".join(tokens))
        source_grams |= ngrams(tokens)
    exact = any_ngram = 0
    max_fraction = 0.0
    contaminated: list[str] = []
    for question in evals:
        tokens = words(question)
        grams = ngrams(tokens)
        fraction = sum(g in source_grams for g in grams) / len(grams) if grams else 0.0
        is_exact = " ".join(tokens) in exact_texts
        exact += is_exact
        any_ngram += fraction > 0
        max_fraction = max(max_fraction, fraction)
        if is_exact or fraction >= OVERLAP_THRESHOLD:
            contaminated.append(question)
    return Overlap(
        train=train_field, eval=eval_field, eval_n=len(evals), exact=exact, any_ngram=any_ngram,
        contaminated=len(contaminated), max_fraction=max_fraction, examples=contaminated[:EXAMPLES],
    )
