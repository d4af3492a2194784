"""Comparisons against the base and the mirage guard: the statistics against hand-computed values, transition
counts on a constructed pair of runs, the flags, the sweep's `eval.reference` and the leaderboard's JSON keys."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from jobs.scoring.stats import mcnemar_exact_p, paired_difference_interval, wilson_interval

# --------------------------------------------------------------------------- exact McNemar


@pytest.mark.parametrize(
    ("regressions", "fixes", "p"),
    [
        # 2 · P[X ≤ min(b, c)], X ~ Binomial(b + c, 1/2), capped at 1:
        (5, 0, 2 * 1 / 2**5),  # 0.0625: five changes all one way is not yet significant
        (0, 6, 2 * 1 / 2**6),  # 0.03125
        (3, 9, 2 * (1 + 12 + 66 + 220) / 2**12),  # 598/4096 = 0.14600
        (2, 10, 2 * (1 + 12 + 66) / 2**12),  # 158/4096 = 0.03857
        (1, 2, 1.0),  # 2 · (1 + 3)/8 = 1
        (4, 4, 1.0),  # 2 · P[X ≤ 4] > 1: capped
        (0, 0, 1.0),  # nothing changed: no evidence
    ],
)
def test_mcnemar_exact_p_by_hand(regressions: int, fixes: int, p: float) -> None:
    assert mcnemar_exact_p(regressions, fixes) == pytest.approx(p, rel=1e-12)
    assert mcnemar_exact_p(fixes, regressions) == pytest.approx(p, rel=1e-12)  # two-sided: symmetric


def test_mcnemar_agrees_with_the_binomial_test_at_large_n() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(30, 55), (480, 520), (1000, 1200)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact_p(3000, 0) == 0.0 or mcnemar_exact_p(3000, 0) < 1e-300  # integers: no overflow error


def test_mcnemar_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 3)


# --------------------------------------------------------------------------- Newcombe's paired interval


def test_newcombe_paired_interval_by_hand() -> None:
    # Altman et al. (2000), Statistics with Confidence, Table 6.2: 14 both, 5 first only, 0 second only, 22 neither.
    # n = 41, p1 = 19/41 = 0.463415, p2 = 14/41 = 0.341463, θ = 5/41 = 0.121951.
    l1, u1 = wilson_interval(19, 41)
    l2, u2 = wilson_interval(14, 41)
    assert (l1, u1) == pytest.approx((0.320562, 0.612535), abs=1e-6)  # Wilson by its closed form
    assert (l2, u2) == pytest.approx((0.215588, 0.494502), abs=1e-6)
    # A = 14·22 − 5·0 = 308 > n/2, margins 19·22·14·27 = 158,004: φ = (308 − 20.5)/√158004 = 0.723276.
    phi = (308 - 20.5) / math.sqrt(19 * 22 * 14 * 27)
    assert phi == pytest.approx(0.723276, abs=1e-6)
    # L = θ − √((p1−l1)² − 2φ(p1−l1)(u2−p2) + (u2−p2)²) = 0.121951 − 0.110468 = 0.011483
    # U = θ + √((u1−p1)² − 2φ(u1−p1)(p2−l2) + (p2−l2)²) = 0.121951 + 0.104541 = 0.226493
    assert paired_difference_interval(14, 5, 0, 22) == pytest.approx((0.011483, 0.226493), abs=1e-6)


@pytest.mark.parametrize(
    ("table", "interval"),
    [
        # Negative association (A = 1·12 − 1·7 = 5 ≤ n/2 = 10.5): φ = 0, plain square-and-add of the Wilson limits.
        ((1, 1, 7, 12), (-0.506920, -0.025559)),
        # A = 59·80 − 6·16 = 4624, n = 161: φ = (4624 − 80.5)/√(65·96·75·86) = 0.716174.
        ((59, 6, 16, 80), (-0.118621, -0.004625)),
        # Nothing changed: θ = 0, an interval that is not degenerate (a margin is empty, so φ = 0).
        ((10, 0, 0, 0), (-0.277533, 0.277533)),
    ],
)
def test_newcombe_paired_interval_more_tables(table: tuple[int, int, int, int], interval: tuple[float, float]) -> None:
    assert paired_difference_interval(*table) == pytest.approx(interval, abs=1e-6)
    low, high = paired_difference_interval(*table)
    both, first, second, neither = table
    theta = (first - second) / sum(table)
    assert -1 <= low <= theta <= high <= 1
    # Swapping the two runs mirrors the interval.
    assert paired_difference_interval(both, second, first, neither) == pytest.approx((-high, -low), abs=1e-12)


def test_newcombe_refuses_impossible_tables() -> None:
    with pytest.raises(ValueError):
        paired_difference_interval(0, 0, 0, 0)
    with pytest.raises(ValueError):
        paired_difference_interval(1, -1, 0, 0)


# --------------------------------------------------------------------------- the sweep's eval.reference

SWEEP = """
name: ref-test
seed: 1
model: {id: Qwen/Qwen2.5-0.5B-Instruct, name: Qwen}
dataset: {name: synthetic, n: 30}
train: {lora_rank: [8], traces: [100]}
eval:
  strategies: [greedy, {self_consistency: {n: 3}}]
"""


def load(tmp_path: Path, text: str):  # noqa: ANN201
    from orchestrator.sweep import load_sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return load_sweep(path)


@pytest.mark.parametrize("reference", ["self_consistency(n=3)", "Qwen + qlora-r8-t100 · greedy", "greedy"])
def test_a_reference_names_a_run_or_a_base_strategy(tmp_path: Path, reference: str) -> None:
    from orchestrator.expand import expand, sweep_hash

    plain = load(tmp_path, SWEEP)
    named = load(tmp_path, SWEEP.replace("eval:\n", f"eval:\n  reference: '{reference}'\n"))
    assert named.eval.reference == reference
    # A sweep-level key: no job's spec (so no job's hash) carries it; the sweep's hash moves only when it is given.
    assert [d.spec_hash for d in expand(named)] == [d.spec_hash for d in expand(plain)]
    assert sweep_hash(named) != sweep_hash(plain)
    assert "reference" not in plain.model_dump(mode="json")["eval"]


def test_an_unknown_reference_is_refused_naming_the_field(tmp_path: Path) -> None:
    from jobs.errors import SweepError

    with pytest.raises(SweepError) as caught:
        load(tmp_path, SWEEP.replace("eval:\n", "eval:\n  reference: beam_search\n"))
    message = str(caught.value)
    assert "eval.reference: no run 'beam_search' in this sweep" in message and "'greedy'" in message
    assert caught.value.exit_code == 2
    # A base strategy needs the base model evaluated.
    with pytest.raises(SweepError, match="eval.reference"):
        load(tmp_path, SWEEP.replace("eval:\n", "eval:\n  include_base: false\n  reference: greedy\n"))


def test_the_labels_a_reference_may_name_are_the_expanded_runs(tmp_path: Path) -> None:
    from orchestrator.expand import expand
    from orchestrator.sweep import eval_run_labels

    for text in (SWEEP, SWEEP.replace("eval:\n", "eval:\n  include_base: false\n"),
                 SWEEP.replace("train: {lora_rank: [8], traces: [100]}", "train: {method: [lora, qlora], lora_rank: [4, 8], traces: 50}")):
        sweep = load(tmp_path, text)
        assert eval_run_labels(sweep) == [d.label for d in expand(sweep) if d.kind == "eval"]


# --------------------------------------------------------------------------- pairing a run with its reference


def answers_from(marks: str, labels: str = "", prefix: str = "q") -> dict:
    """`marks`: one character a question, 1 right 0 wrong; `labels`: a failure label initial per question."""
    from orchestrator.analysis import Answer

    names = {"r": "relationship", "a": "arithmetic", "u": "unit", "f": "format", ".": None}
    labels = labels or "." * len(marks)
    return {
        f"{prefix}{i}": Answer(correct=m == "1", label=None if m == "1" else names[label], question=f"question {i}")
        for i, (m, label) in enumerate(zip(marks, labels, strict=True))
    }


BASE = "1111111111" "1111100000" "00000"  # 25 questions: 15 right
RUN = "1111111000" "0011111110" "00000"  # wrong at q7-q11 and q19-q24
RUN_LABELS = "......." "rar.r" "......." "a" "ffuff"  # a failure label initial per question ('.': none)


def test_transition_counts_on_a_constructed_pair() -> None:
    from orchestrator.analysis import compare, transitions

    base, run = answers_from(BASE), answers_from(RUN, RUN_LABELS)
    t = transitions(run, base)
    # by hand: q0-q6 both right (7), q7-q11 right→wrong (5), q12-q14 right→right (3), q15-q18 wrong→right (4),
    # q19-q24 both wrong (6)
    assert (t.both_right, t.regressions, t.fixes, t.both_wrong) == (10, 5, 4, 6)
    assert t.regressed == ("q7", "q8", "q9", "q10", "q11") and t.fixed == ("q15", "q16", "q17", "q18")
    c = compare(run, base, reference_label="m + base · greedy", reference_job_id="b1")
    assert c.delta == pytest.approx((4 - 5) / 25)
    assert c.mcnemar_p == 1.0  # b + c = 9, min 4: 2 · (1 + 9 + 36 + 84 + 126)/2⁹ = 512/512
    assert (c.delta_ci_low, c.delta_ci_high) == pytest.approx(paired_difference_interval(10, 4, 5, 6))
    # The regressions' labels, most frequent first: q7 r, q8 a, q9 r, q10 ., q11 r
    assert c.regression_taxonomy == {"relationship": 3, "arithmetic": 1, "unlabelled": 1}
    assert c.as_json()["regression_taxonomy"] == c.regression_taxonomy


def test_runs_asked_different_questions_are_never_compared() -> None:
    from orchestrator.analysis import compare

    base = answers_from("1100")
    for run in (answers_from("11001"), answers_from("1100", prefix="x")):
        c = compare(run, base, reference_label="ref", reference_job_id="b1")
        assert c.table is None and c.note and c.note.startswith("different question sets")
        numbers = {k: v for k, v in c.as_json().items() if k not in ("reference", "reference_job_id", "note")}
        assert set(numbers.values()) == {None}
    # Same ids, another question behind one of them (e.g. synthetic sets of another complexity): different too.
    from orchestrator.analysis import Answer

    other = {**base, "q3": Answer(correct=False, question="something else")}
    assert compare(other, base, reference_label="ref", reference_job_id="b1").table is None


def test_shares_read_like_the_seed_experiment() -> None:
    from orchestrator.analysis import label_counts, shares

    counts = label_counts(answers_from("0" * 25, "r" * 12 + "a" * 10 + "u" * 2 + "f").values())
    assert shares(counts) == "relationship 48%, arithmetic 40%, unit 8%, format 4%"
    assert label_counts(answers_from("110").values()) is None  # wrong but never classified
    assert label_counts(answers_from("111").values()) == {}


# --------------------------------------------------------------------------- flags


def figures(job_id: str, n: int, correct: int):  # noqa: ANN201
    from orchestrator.analysis import Figures

    low, high = wilson_interval(correct, n)
    return Figures("s", "sweep", job_id, "m + base · greedy", n, correct / n, low, high)


THRESHOLDS = dict(quick_eval_n=200, quick_eval_half_width=0.07, significance=0.05)


@pytest.mark.parametrize(
    ("n", "correct", "quick"),
    [
        (199, 100, True),  # below n
        (200, 100, False),  # half-width 0.0686 ≤ 0.07
        (190, 95, True),
        (400, 200, False),
    ],
)
def test_quick_eval_by_n_and_by_width(n: int, correct: int, quick: bool) -> None:
    from orchestrator.analysis import QUICK_EVAL, Thresholds, flags

    assert (QUICK_EVAL in flags(figures("r", n, correct), None, [], Thresholds(**THRESHOLDS))) is quick


def test_quick_eval_by_width_alone() -> None:
    from orchestrator.analysis import QUICK_EVAL, Thresholds, flags

    low, high = wilson_interval(100, 200)
    assert (high - low) / 2 == pytest.approx(0.0686, abs=1e-4)
    t = Thresholds(quick_eval_n=10, quick_eval_half_width=0.06, significance=0.05)
    assert flags(figures("r", 200, 100), None, [], t) == [QUICK_EVAL]


def test_not_significant_against_the_base() -> None:
    from orchestrator.analysis import NOT_SIGNIFICANT, Thresholds, compare, flags

    t = Thresholds(**THRESHOLDS)
    base = answers_from("0" * 300)
    six_fixes = compare(answers_from("1" * 6 + "0" * 294), base, reference_label="b", reference_job_id="b")
    five_fixes = compare(answers_from("1" * 5 + "0" * 295), base, reference_label="b", reference_job_id="b")
    assert six_fixes.mcnemar_p == pytest.approx(0.03125) and five_fixes.mcnemar_p == pytest.approx(0.0625)
    assert flags(figures("r", 300, 6), six_fixes, [], t) == []
    assert flags(figures("r", 300, 5), five_fixes, [], t) == [NOT_SIGNIFICANT]
    assert flags(figures("r", 300, 5), five_fixes, [], Thresholds(200, 0.07, 0.07)) == []


def test_mirage_when_the_larger_set_falls_outside_the_subset_interval() -> None:
    from orchestrator.analysis import MIRAGE, QUICK_EVAL, MirageCheck, Thresholds, flags, nested

    t = Thresholds(**THRESHOLDS)
    subset = figures("small", 50, 30)  # 60%, Wilson [46.2%, 72.4%]
    assert (subset.ci_low, subset.ci_high) == pytest.approx((0.4618, 0.7239), abs=1e-4)
    confirmed = MirageCheck(subset=subset, larger=figures("big", 600, 300))  # 50% is inside
    refuted = MirageCheck(subset=subset, larger=figures("big", 600, 240))  # 40% is outside
    assert not confirmed.mirage and refuted.mirage
    assert flags(subset, None, [confirmed], t) == [QUICK_EVAL]
    assert flags(subset, None, [refuted], t) == [QUICK_EVAL, MIRAGE]
    assert flags(figures("big", 600, 240), None, [refuted], t) == []  # the larger set is the one to trust
    assert refuted.as_json()["mirage"] is True and refuted.as_json()["larger"]["n"] == 600
    # Nesting needs the same questions (ids and texts) and strictly more of them.
    small, big = answers_from("10" * 5), answers_from("10" * 20)
    assert nested(small, big) and not nested(big, small) and not nested(small, small)
    assert not nested(answers_from("10" * 5, prefix="x"), big)
