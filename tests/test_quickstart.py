"""The README's promise: the embedded default runs a sweep end to end on the real SmolLM2, no services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.model_fixtures import require_smollm2

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return {**env, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=embedded_env(), capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(example: Path) -> None:
    if "../shared" in example.read_text():
        from tests.model_fixtures import require_gsm8k

        require_gsm8k()
    result = cli("submit", "--dry-run", str(example), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "nothing written" in result.stdout


@pytest.mark.slow
def test_embedded_quickstart_end_to_end(tmp_path: Path) -> None:
    require_smollm2()
    spec = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    spec["dataset"]["n"] = 4  # the example's own settings, on fewer questions and tokens
    spec["eval"]["max_new_tokens"] = 48
    sweep = tmp_path / "quickstart.yaml"
    sweep.write_text(yaml.safe_dump(spec))

    first = cli("submit", str(sweep), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "reasonfleet.db").is_file()
    assert "SmolLM2-135M-Instruct + base · greedy" in first.stdout  # the leaderboard printed at the end

    board = cli("leaderboard", "--format", "json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    (run,) = json.loads(board.stdout)
    assert run["n"] == 4 and run["strategy"] == "greedy" and run["model"] == "SmolLM2-135M-Instruct"
    assert 0 < run["mean_output_tokens"] <= 48 and run["tokens_per_s"] > 0
    assert run["ci_low"] <= run["pass_at_1"] <= run["ci_high"]

    again = cli("submit", str(sweep), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 new jobs, 1 already succeeded" in " ".join(again.stdout.split())
    rerun = json.loads(cli("leaderboard", "--format", "json", cwd=tmp_path).stdout)
    assert rerun == [run]  # nothing re-ran: the same single result

    markdown = cli("leaderboard", "--format", "md", "--output", str(tmp_path / "board.md"), cwd=tmp_path)
    assert markdown.returncode == 0, markdown.stderr
    assert "| 1 | SmolLM2-135M-Instruct + base · greedy | 4 |" in (tmp_path / "board.md").read_text()
