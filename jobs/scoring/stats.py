"""Interval estimates for the numbers we publish."""

from __future__ import annotations

import math

Z_95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Preferred over the normal approximation because it stays inside [0, 1] and is
    honest at the small n and extreme accuracies small models produce.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= correct <= n:
        raise ValueError("correct must be between 0 and n")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n correct the bound is exactly 0 or 1; floating error must not put it past p.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact_p(regressions: int, fixes: int) -> float:
    """Two-sided exact McNemar test: the binomial test of the discordant pairs against 1/2.

    Only the questions that changed carry evidence; under "no difference" each of the
    b + c changes is a regression or a fix with probability 1/2, so the p-value is
    min(1, 2 · P[X ≤ min(b, c)]) with X ~ Binomial(b + c, 1/2). No discordant pairs: 1.
    Computed in integers (exact for any n; no underflow of 0.5**n).
    """
    if regressions < 0 or fixes < 0:
        raise ValueError("counts must be >= 0")
    discordant = regressions + fixes
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(regressions, fixes) + 1))
    return min(1.0, 2 * tail / (1 << discordant))


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, z: float = Z_95
) -> tuple[float, float]:
    """95% interval for p1 − p2 of two proportions measured on the same items (paired).

    Newcombe (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", Statistics in Medicine 17:2635-2650, method 10: the
    hybrid score ("square-and-add") interval built on the Wilson intervals (l1, u1) of
    p1 = (both + first_only)/n and (l2, u2) of p2 = (both + second_only)/n,

        L = θ − sqrt((p1 − l1)² − 2φ(p1 − l1)(u2 − p2) + (u2 − p2)²)
        U = θ + sqrt((u1 − p1)² − 2φ(u1 − p1)(p2 − l2) + (p2 − l2)²),   θ = p1 − p2,

    where φ is the correlation of the pairs with Newcombe's correction: with A = both·neither −
    first_only·second_only and the four margins' product M, φ = (A − n/2)/√M when A > n/2,
    0 when 0 ≤ A ≤ n/2, A/√M when A < 0, and 0 when a margin is empty. Unlike the Wald
    interval it stays inside [−1, 1] and is not degenerate when no item changed.
    """
    counts = (both, first_only, second_only, neither)
    if any(count < 0 for count in counts):
        raise ValueError("counts must be >= 0")
    n = sum(counts)
    if n == 0:
        raise ValueError("n must be positive")
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    l1, u1 = wilson_interval(both + first_only, n, z)
    l2, u2 = wilson_interval(both + second_only, n, z)
    phi = _paired_correlation(both, first_only, second_only, neither)
    low = p1 - p2 - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = p1 - p2 + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def _paired_correlation(both: int, first_only: int, second_only: int, neither: int) -> float:
    """Newcombe's φ for method 10: the phi coefficient of the 2×2 table, its excess over n/2 only when positive."""
    n = both + first_only + second_only + neither
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    if margins == 0:
        return 0.0
    a = both * neither - first_only * second_only
    if a > n / 2:
        return (a - n / 2) / math.sqrt(margins)
    return 0.0 if a >= 0 else a / math.sqrt(margins)
