"""The CLI as a new user meets it on an 80-column terminal and through a pipe: tables fit the width without
cutting an id or a state, the leaderboard shows memory and latency where there is room, progress is plain lines
(no `\\r` frames) when the output is not a terminal, an empty fleet says why, and no completion options."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlmodel import select

from db.migrate import upgrade
from db.models import Job, Sweep, SweepJob
from db.session import session_scope
from db.states import JobState, transition
from tests.model_fixtures import TinyModel
from tests.test_report_show import record_all

REPO = Path(__file__).resolve().parents[1]
LONG_ERROR = "FatalJobError: train.target_modules: the model has no module named q_proj_typo; it has q_proj, k_proj"


def run(*args: str, cwd: Path, columns: int = 80, module: str = "orchestrator.cli") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    env |= {"COLUMNS": str(columns), "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", "")}
    # capture_output: stdout and stderr are pipes, as in `orchestrator status | less` or a log file.
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[Path, list[Job]]:
    """The constructed sweeps of test_report_show in the embedded SQLite file, plus a failed and a cancelled job
    with long labels and errors in `quick`."""
    url = f"sqlite:///{tmp_path / 'reasonfleet.db'}"
    upgrade(url)
    record_all(url, tmp_path)
    with session_scope(url) as session:
        quick = session.exec(select(Sweep).where(Sweep.name == "quick")).one()
        for i, (to, error) in enumerate([(JobState.failed, LONG_ERROR), (JobState.cancelled, "dependency failed")]):
            job = Job(kind="train", label=f"train SmolLM2-135M-Instruct qlora r{8 * (i + 1)} t500 a long label",
                      spec={"i": i}, spec_hash=f"extra-{i}")
            session.add(job)
            transition(job, JobState.queued)
            if to is JobState.failed:
                transition(job, JobState.running)
            transition(job, to, error=error)
            session.flush()
            session.add(SweepJob(sweep_id=quick.id, job_id=job.id, position=10 + i))
        jobs = [*session.exec(select(Job).join(SweepJob).where(SweepJob.sweep_id == quick.id)).all()]
    return tmp_path, jobs


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_status_keeps_ids_and_states_whole_at_any_width(recorded: tuple[Path, list[Job]], columns: int) -> None:
    cwd, jobs = recorded
    shown = run("status", "quick", cwd=cwd, columns=columns)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, shown.stdout
    assert "…" not in shown.stdout
    for job in jobs:  # the id and the state on one line, each whole: copyable
        assert any(re.search(rf"\b{job.id}\b.*\b{job.state}\b", line) for line in lines), (job.id, shown.stdout)
    if columns >= 120:
        assert "target_modules" in shown.stdout  # the error column, wrapped but whole


def test_the_leaderboard_fits_80_columns_and_shows_memory_and_latency_when_wide(
    recorded: tuple[Path, list[Job]],
) -> None:
    cwd, _ = recorded
    narrow = run("leaderboard", "--sweep", "quick", cwd=cwd, columns=80)
    assert narrow.returncode == 0, narrow.stderr
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    assert "…" not in narrow.stdout and "pass@1 [95% CI]" in narrow.stdout
    assert "qlora-r8-t100" in narrow.stdout  # the run label may wrap, never shrinks to an ellipsis
    wide = run("leaderboard", "--sweep", "quick", cwd=cwd, columns=160)
    header = next(line for line in wide.stdout.splitlines() if line.startswith("#"))
    for column in ("run", "pass@1 [95% CI]", "tokens mean/med", "RES", "tok/s", "trunc/loops", "peak MB", "latency s"):
        assert column in header, header
    assert "100 (rss)" in wide.stdout  # peak memory, as the JSON has it: 100.0 MB of RSS


def test_workers_in_embedded_mode_says_workers_need_a_broker(tmp_path: Path) -> None:
    shown = run("workers", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "embedded mode (REASONFLEET_BROKER_URL is unset)" in shown.stdout
    assert "Workers exist only with a broker" in shown.stdout and "0 worker(s)" not in shown.stdout


@pytest.mark.parametrize("module", ["orchestrator.cli", "workers.cli"])
def test_no_completion_options_in_the_help(tmp_path: Path, module: str) -> None:
    shown = run("--help", cwd=tmp_path, module=module)
    assert shown.returncode == 0, shown.stderr
    assert "completion" not in shown.stdout


def test_an_embedded_run_through_a_pipe_prints_plain_lines(tmp_path: Path, tiny_model: TinyModel) -> None:
    sweep = {
        "name": "piped", "seed": 0, "model": {"id": str(tiny_model.path), "name": "tiny"},
        "dataset": {"name": "synthetic", "n": 4, "complexity": [1, 2]},
        "eval": {"strategies": ["greedy"], "max_new_tokens": 8, "batch_size": 4},
    }
    (tmp_path / "piped.yaml").write_text(yaml.safe_dump(sweep))
    submitted = run("submit", "piped.yaml", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    assert "\r" not in submitted.stdout + submitted.stderr
    assert "tiny + base · greedy: started" in submitted.stdout
    assert re.search(r"tiny \+ base · greedy: succeeded after \d+ s", submitted.stdout), submitted.stdout


def test_tqdm_bars_are_off_once_the_embedded_executor_runs_without_a_terminal(tmp_path: Path) -> None:
    """transformers de-quantises a GGUF under a tqdm bar of its own; tqdm reads TQDM_DISABLE when imported,
    which happens after the executor starts (the ML imports are lazy), so the bar never reaches a log."""
    script = (
        "import io, sys\n"
        "from rich.console import Console\n"
        "from orchestrator.embedded import run_in_process\n"
        "run_in_process([], Console(file=io.StringIO()))\n"
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3), desc='Converting and de-quantizing GGUF tensors...'): pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TQDM_DISABLE", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "de-quantizing" not in done.stderr and "\r" not in done.stderr
