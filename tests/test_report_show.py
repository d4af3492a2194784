"""Where the user sees the comparisons: the leaderboard (JSON keys, the 80-column table, Markdown), `orchestrator
show <run>` and `orchestrator report <sweep>`, on sweeps recorded in a real database with constructed predictions.

The sweeps (model M, constructed so every figure can be checked by hand):
- `quick`: 50 questions. Base greedy right on q0-q29 (60%); the adapter qlora-r8-t100 (greedy) regresses on
  q20-q29 (relationship ×5, arithmetic ×4, unit ×1) and fixes q30-q31 (44%); base self_consistency fixes
  q30-q31 and regresses on none (64%). Every wrong answer is labelled.
- `full`: 250 questions, the first 50 those of `quick`. Base greedy right on q0-q99 (40%: outside quick's
  interval [46.2, 72.4], so quick's base greedy was a mirage); the adapter regresses on q90-q99 and fixes
  q100-q124 (46%: inside quick's [31.2, 57.7]). Unclassified.
- `quick-ref`: the jobs of `quick` again, with `eval.reference: self_consistency`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlmodel import select

from db.migrate import upgrade
from db.models import EvalResult, Job, Prediction, Sweep, SweepJob
from db.session import session_scope
from db.states import JobState
from jobs.scoring.stats import wilson_interval
from jobs.specs import StrategySpec, run_label

REPO = Path(__file__).resolve().parents[1]
MODEL = {"id": "m", "name": "M"}
LABELS_BY_INITIAL = {"r": "relationship", "a": "arithmetic", "u": "unit", "f": "format", "o": "other"}
THRESHOLDS = {"quick_eval_n": 200, "quick_eval_half_width": 0.07, "significance": 0.05}


@dataclass
class RunPlan:
    adapter: str | None
    strategy: str
    right: set[int]
    labels: dict[int, str] = field(default_factory=dict)  # question index → label initial; others "o"


def questions(n: int, prefix: str = "q") -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", f"{prefix.upper()} question {i}: how many apples?") for i in range(n)]


def record_sweep(
    url: str, name: str, qs: list[tuple[str, str]], plans: list[RunPlan], *, classified: bool = True,
    reference: str | None = None,
) -> dict[str, str]:
    """A sweep with succeeded eval jobs, results and predictions; returns run label → job id."""
    jobs: dict[str, str] = {}
    with session_scope(url) as session:
        sweep = _sweep_row(name, reference)
        session.add(sweep)
        for position, plan in enumerate(plans):
            strategy = StrategySpec(name=plan.strategy)
            label = run_label("M", plan.adapter, strategy.label)
            spec = {
                "kind": "eval", "model": MODEL, "strategy": strategy.model_dump(mode="json"),
                "adapter": {"train_job": "t" * 64, "label": plan.adapter, "uri": None} if plan.adapter else None,
                "dataset": {"name": "synthetic", "n": len(qs)}, "seed": 0,
            }
            job = Job(kind="eval", label=label, spec=spec, spec_hash=f"{name}/{label}", state=JobState.succeeded)
            session.add(job)
            session.flush()
            session.add(SweepJob(sweep_id=sweep.id, job_id=job.id, position=position))
            _results(session, job, plan, strategy.label, qs, classified=classified)
            jobs[label] = job.id
    return jobs


def _sweep_row(name: str, reference: str | None) -> Sweep:
    spec = {"name": name, "seed": 0, "model": MODEL, "eval": {"strategies": ["greedy"]}}
    if reference:
        spec["eval"]["reference"] = reference
    return Sweep(name=name, seed=0, spec=spec, spec_hash=f"hash-of-{name}")


def _results(session, job: Job, plan: RunPlan, strategy: str, qs, *, classified: bool) -> None:  # noqa: ANN001
    taxonomy: dict[str, int] = {}
    for i, (qid, text) in enumerate(qs):
        right = i in plan.right
        label = None if right or not classified else LABELS_BY_INITIAL[plan.labels.get(i, "o")]
        if label:
            taxonomy[label] = taxonomy.get(label, 0) + 1
        session.add(Prediction(
            job_id=job.id, question_id=qid, question=text, reference_answer="7", raw_output=f"{job.label} says {i}",
            extracted_answer="7" if right else str(i), correct=right, output_tokens=10, latency_s=0.1, complexity=2,
            failure_label=label, failure_exact=False if label else None,
            failure_evidence=f"evidence for {qid}" if label else None, failure_reading=None,
        ))
    n, correct = len(qs), sum(1 for i in range(len(qs)) if i in plan.right)
    low, high = wilson_interval(correct, n)
    session.add(EvalResult(
        job_id=job.id, model="M", adapter=plan.adapter, strategy=strategy, dataset=f"synthetic(n={n})", n=n,
        correct=correct, pass_at_1=correct / n, ci_low=low, ci_high=high, mean_output_tokens=10.0, wall_s=1.0,
        tokens_per_s=100.0, peak_memory_mb=100.0, memory_kind="rss", device="cpu", seed=0,
        taxonomy=taxonomy if classified else None,
    ))


QUICK = [
    RunPlan(None, "greedy", set(range(30)), {i: "o" for i in range(30, 50)}),
    RunPlan("qlora-r8-t100", "greedy", set(range(20)) | {30, 31},
            {**dict.fromkeys(range(20, 25), "r"), **dict.fromkeys(range(25, 29), "a"), 29: "u"}),
    RunPlan(None, "self_consistency", set(range(32))),
]
FULL = [
    RunPlan(None, "greedy", set(range(100))),
    RunPlan("qlora-r8-t100", "greedy", set(range(90)) | set(range(100, 125))),
]
BASE, ADAPTER, SC = "M + base · greedy", "M + qlora-r8-t100 · greedy", "M + base · self_consistency"


@dataclass
class Recorded:
    url: str
    cwd: Path
    quick: dict[str, str]
    full: dict[str, str]


def record_all(url: str, cwd: Path) -> Recorded:
    quick = record_sweep(url, "quick", questions(50), QUICK)
    full = record_sweep(url, "full", questions(250), FULL, classified=False)
    with session_scope(url) as session:  # the same jobs in a sweep that names another reference
        sweep = _sweep_row("quick-ref", "self_consistency")
        session.add(sweep)
        session.flush()
        for position, job_id in enumerate(quick.values()):
            session.add(SweepJob(sweep_id=sweep.id, job_id=job_id, position=position))
    return Recorded(url, cwd, quick, full)


@pytest.fixture()
def embedded(tmp_path: Path) -> Recorded:
    """The sweeps in the SQLite file an embedded `orchestrator` finds in its working directory."""
    url = f"sqlite:///{tmp_path / 'reasonfleet.db'}"
    upgrade(url)
    return record_all(url, tmp_path)


@pytest.fixture(params=["postgres", "sqlite"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Recorded:
    if request.param == "sqlite":
        yield request.getfixturevalue("embedded")
        return
    from tests.service_fixtures import scratch_database

    with scratch_database("rf_analysis") as url:
        upgrade(url)
        yield record_all(url, tmp_path)


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    clean |= {"PYTHONPATH": str(REPO) + os.pathsep + clean.get("PYTHONPATH", ""), "COLUMNS": "80", **(env or {})}
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.run(command, cwd=cwd, env=clean, capture_output=True, text=True, timeout=120)


def board(url: str, sweep: str) -> dict[str, dict]:
    from orchestrator import leaderboard
    from orchestrator.analysis import Thresholds

    with session_scope(url) as session:
        sweep_id = session.exec(select(Sweep.id).where(Sweep.name == sweep)).one()
        rows = leaderboard.rows(session, sweep_ids=[sweep_id], thresholds=Thresholds(**THRESHOLDS))
    return {run["run"]: run for run in json.loads(leaderboard.as_json(rows))}


# --------------------------------------------------------------------------- the leaderboard's JSON


VS_BASE_KEYS = {
    "reference", "both_right", "regressions", "fixes", "both_wrong", "mcnemar_p", "delta", "delta_ci_low",
    "delta_ci_high", "regression_taxonomy",
}


def test_leaderboard_json_gains_taxonomy_vs_base_and_flags(any_db: Recorded) -> None:
    runs = board(any_db.url, "quick")
    assert set(runs) == {BASE, ADAPTER, SC}
    for run in runs.values():
        assert {"taxonomy", "vs_base", "flags"} <= run.keys()
        assert {"sweep", "run", "n", "pass_at_1", "ci_low", "ci_high"} <= run.keys()  # the old keys stay
    base, adapter, sc = runs[BASE], runs[ADAPTER], runs[SC]
    assert base["vs_base"] is None  # the reference itself
    assert base["taxonomy"] == {"other": 20}
    assert adapter["taxonomy"] == {"other": 18, "relationship": 5, "arithmetic": 4, "unit": 1}

    vs = adapter["vs_base"]
    assert VS_BASE_KEYS <= vs.keys()
    assert (vs["reference"], vs["both_right"], vs["regressions"], vs["fixes"], vs["both_wrong"]) == (BASE, 20, 10, 2, 18)
    assert vs["mcnemar_p"] == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.0386
    assert vs["delta"] == pytest.approx(-8 / 50)
    assert vs["delta_ci_low"] < vs["delta"] < vs["delta_ci_high"] < 0
    assert vs["regression_taxonomy"] == {"relationship": 5, "arithmetic": 4, "unit": 1}

    assert (sc["vs_base"]["regressions"], sc["vs_base"]["fixes"], sc["vs_base"]["mcnemar_p"]) == (0, 2, 0.5)
    # n 50 < 200 everywhere; McNemar 0.5 is not significant; quick's base greedy: 40% on the 250 is outside [46.2, 72.4]
    assert base["flags"] == ["quick-eval", "mirage"]
    assert adapter["flags"] == ["quick-eval"]
    assert sc["flags"] == ["quick-eval", "not-significant"]
    (check,) = base["mirage_checks"]
    assert check["mirage"] is True and (check["subset"]["n"], check["larger"]["n"]) == (50, 250)
    assert check["larger"]["sweep"] == "full" and check["larger"]["pass_at_1"] == pytest.approx(0.4)
    assert [c["mirage"] for c in adapter["mirage_checks"]] == [False]  # 46% is inside [31.2, 57.7]


def test_the_larger_set_shows_both_and_an_unclassified_run_has_no_taxonomy(any_db: Recorded) -> None:
    runs = board(any_db.url, "full")
    base, adapter = runs[BASE], runs[ADAPTER]
    assert base["flags"] == [] and base["taxonomy"] is None  # the larger set is trusted; nothing labelled yet
    # quick's base greedy (a job quick-ref shares: the check names its newest sweep)
    assert [c["subset"]["job_id"] for c in base["mirage_checks"]] == [any_db.quick[BASE]]
    vs = adapter["vs_base"]
    assert (vs["both_right"], vs["regressions"], vs["fixes"], vs["both_wrong"]) == (90, 10, 25, 125)
    assert vs["mcnemar_p"] < 0.05 and adapter["flags"] == []
    assert vs["regression_taxonomy"] is None  # its regressions are not classified


def test_a_named_reference_replaces_the_base(any_db: Recorded) -> None:
    runs = board(any_db.url, "quick-ref")
    assert runs[SC]["vs_base"] is None
    assert runs[BASE]["vs_base"]["reference"] == SC
    assert (runs[BASE]["vs_base"]["regressions"], runs[BASE]["vs_base"]["fixes"]) == (2, 0)
    assert runs[ADAPTER]["vs_base"]["reference"] == SC


# --------------------------------------------------------------------------- the terminal table and Markdown


def test_terminal_comparison_fits_80_columns_and_markdown_has_every_column(embedded: Recorded) -> None:
    table = cli("leaderboard", "--sweep", "quick", cwd=embedded.cwd)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    # The comparison is a table of its own below the leaderboard (keyed by rank), so that it fits 80 columns.
    lines = text[text.index(f"vs {BASE}") :].splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    assert f"vs {BASE}" in text and "-16.0" in text and "10/2" in text and "0.039" in text
    assert "other 64%" in text and "mirage" in text and "not-significant" in text

    markdown = cli("leaderboard", "--sweep", "quick", "--format", "md", cwd=embedded.cwd).stdout
    header = next(line for line in markdown.splitlines() if line.startswith("| # |"))
    for column in ("pass@1 [95% CI]", "Δ pass@1 [95% CI]", "reg/fix", "McNemar p", "top failure", "flags"):
        assert f"| {column} |" in header + " |"
    adapter_row = next(line for line in markdown.splitlines() if f"| {ADAPTER} |" in line)
    assert "| -16.0 [" in adapter_row and "| 10/2 | 0.039 | other 64% | quick-eval |" in adapter_row


# --------------------------------------------------------------------------- orchestrator show


def test_show_a_run_its_comparison_and_regressions(embedded: Recorded) -> None:
    shown = cli("show", ADAPTER, "--sweep", "quick", cwd=embedded.cwd)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"{ADAPTER}  (job {embedded.quick[ADAPTER]}, sweep quick" in out
    assert "n 50 · pass@1 44.0% [31.2, 57.7]" in out and "flags: quick-eval" in out
    assert "both right 20 · regressions 10 · fixes 2 · both wrong 18" in out
    assert "regressions by failure label: relationship 50%, arithmetic 40%, unit 10%" in out
    assert "regressions (10): q20, q21, q22, q23, q24, q25, q26, q27, q28, q29" in out
    assert "fixes (2): q30, q31" in out
    assert "relationship      5   18%" in out  # the taxonomy table: 5 of 28 wrong answers
    assert "generation:" not in out  # raw generations only on demand
    # by job id, the newest sweep that has it
    assert cli("show", embedded.quick[ADAPTER], cwd=embedded.cwd).returncode == 0


def test_show_examples_on_demand(embedded: Recorded) -> None:
    regressions = cli("show", ADAPTER, "-s", "quick", "--examples", "regressions", "-n", "2", cwd=embedded.cwd).stdout
    assert "examples: regressions, 2 of 10" in regressions
    assert "── q20 · wrong (relationship)" in regressions and "── q21 ·" in regressions and "── q22" not in regressions
    assert f"{ADAPTER} says 20" in regressions and f"{BASE} says 20" in regressions  # both generations
    assert "evidence: evidence for q20" in regressions
    unit = cli("show", ADAPTER, "-s", "quick", "--examples", "unit", cwd=embedded.cwd).stdout
    assert "examples: unit, 1 of 1" in unit and "── q29 · wrong (unit)" in unit


@pytest.mark.parametrize(
    ("args", "says", "code"),
    [
        (["show", ADAPTER, "--examples", "typos"], "error: --examples: expected regressions, fixes or a failure label", 2),
        (["show", ADAPTER, "--examples", "fixes", "-n", "0"], "error: -n: expected at least 1, got 0", 2),
        (["show", "M + lora-r1 · greedy"], "error: no eval run 'M + lora-r1 · greedy'", 4),
        (["show", BASE, "--examples", "regressions", "-s", "quick"], "error: --examples regressions: this run has no", 2),
    ],
)
def test_show_refuses_bad_input_in_one_line(embedded: Recorded, args: list[str], says: str, code: int) -> None:
    result = cli(*args, cwd=embedded.cwd)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr


# --------------------------------------------------------------------------- orchestrator report


def test_report_writes_one_markdown_file(embedded: Recorded) -> None:
    out = embedded.cwd / "results"
    made = cli("report", "quick", "-o", str(out), cwd=embedded.cwd)
    assert made.returncode == 0, made.stderr
    (path,) = out.iterdir()
    assert path.name.startswith("quick-") and path.suffix == ".md" and f"wrote {path}" in made.stderr
    text = path.read_text()
    for heading in ("# quick: report", "## Leaderboard", f"## Comparisons against {BASE}", "## Failure taxonomy",
                    "### Regressions by failure label", "## Flags", "## Sweep file"):
        assert f"\n{heading}\n" in "\n" + text, heading
    assert "| config hash | `hash-of-quick` |" in text and "| seed | 0 |" in text and "reasonfleet " in text
    assert f"| {ADAPTER} | 50 | 20 | 10 | 2 | 18 | -16.0 [" in text
    assert "| 0.039 | relationship 50%, arithmetic 40%, unit 10% |" in text
    assert f"| {ADAPTER} | 10 | 5 (50%) |" in text  # the regressions' table: relationship first
    assert f"- **{BASE}**: `mirage`: on 250 questions (full) it scored 40.0%, outside [46.2, 72.4]" in text
    assert f"- **{SC}**: `not-significant`: McNemar p 0.500 against {BASE}" in text
    # same database, same report
    assert cli("report", "quick", "-o", str(out), cwd=embedded.cwd).returncode == 0
    assert path.read_text() == text


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"REASONFLEET_QUICK_EVAL_N": "-1"}, [], "error: REASONFLEET_QUICK_EVAL_N: "),
        ({"REASONFLEET_QUICK_EVAL_HALF_WIDTH": "2"}, [], "error: REASONFLEET_QUICK_EVAL_HALF_WIDTH: "),
        ({"REASONFLEET_SIGNIFICANCE": "1.5"}, [], "error: REASONFLEET_SIGNIFICANCE: "),
        ({}, ["--output", "a-file"], "error: -o a-file: exists and is not a directory"),
    ],
)
def test_report_refuses_bad_input_and_writes_nothing(
    embedded: Recorded, env: dict[str, str], args: list[str], says: str
) -> None:
    (embedded.cwd / "a-file").write_text("")
    result = cli("report", "quick", *(args or ["-o", "out"]), cwd=embedded.cwd, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(says) and result.stderr.count("\n") == 1, result.stderr
    assert not (embedded.cwd / "out").exists() and (embedded.cwd / "a-file").read_text() == ""


def test_an_unknown_reference_stops_submit_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(textwrap.dedent("""
        name: ref
        model: {id: some/model, name: M}
        dataset: {name: synthetic, n: 5}
        eval: {strategies: [greedy], reference: beam_search}
    """))
    result = cli("submit", str(sweep), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "eval.reference: no run 'beam_search' in this sweep" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "reasonfleet.db").exists()
