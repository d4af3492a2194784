"""Wilson interval against published values and its edge cases."""

import pytest

from jobs.scoring.stats import wilson_interval


def score_test_bounds(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval by its definition: the p where |p_hat - p| / sqrt(p(1-p)/n) <= z, found by bisection."""
    p_hat = correct / n

    def inside(p: float) -> bool:
        return abs(p_hat - p) <= z * (p * (1 - p) / n) ** 0.5

    def edge(outside: float, inner: float) -> float:
        for _ in range(200):
            middle = (outside + inner) / 2
            outside, inner = (outside, middle) if inside(middle) else (middle, inner)
        return inner

    return edge(0.0, p_hat) if correct else 0.0, edge(1.0, p_hat) if correct < n else 1.0


@pytest.mark.parametrize(("correct", "n"), [(0, 10), (10, 10), (5, 10), (1, 7), (81, 1319), (599, 600)])
def test_matches_the_score_test_definition(correct: int, n: int) -> None:
    assert wilson_interval(correct, n) == pytest.approx(score_test_bounds(correct, n), abs=1e-9)


def test_closed_form_at_zero_correct() -> None:
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))


@pytest.mark.parametrize("n", [1, 2, 6, 7, 20, 600, 1319])
def test_bounds_contain_the_estimate_exactly(n: int) -> None:
    for correct in range(0, n + 1, max(1, n // 50)):
        low, high = wilson_interval(correct, n)
        assert 0.0 <= low <= correct / n <= high <= 1.0


def test_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
