"""Issue #15 item 1: curated training data (jobs.data.curation, the curate job, `train.source: {curated: …}`).

Each filter on a small constructed source whose counts are known by hand; then the whole path in
embedded mode (SQLite, the runner in-process) with the tiny random model as baseline and student.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from db.models import CuratedDataset, Job, Prediction, TrainResult
from db.session import session_scope
from db.settings import reload_settings
from jobs.data.curation import (
    NEAR_DUPLICATE,
    Item,
    curate,
    dense,
    density,
    difficulty,
    distractors,
    diverse,
    jaccard,
    operations,
    quality,
    shingles,
    steps,
    stratum,
)
from jobs.errors import FatalJobError, SweepError
from orchestrator.submit import plan, record
from tests.model_fixtures import TinyModel

LONG = ("A baker makes 24 loaves of bread every morning and sells them at the market in the town square to "
        "the families who live nearby. How many loaves does the baker make in a week?")
GOOD = Item("s-0", "Ann has 3 apples and buys 4 more. How many apples does she have?", "3 + 4 = <<3+4=7>>7\n#### 7")
WEEK = Item("s-1", LONG, "24 * 7 = <<24*7=168>>168\n#### 168")
NO_ANSWER = Item("s-2", "Bob has 5 pens. How many pens?", "He has 5 pens.")
WRONG = Item("s-3", "Cid buys 3 boxes of 4 eggs. How many eggs?", "3 * 4 = <<3*4=13>>13 eggs\n#### 13")
COPY = Item("s-4", "ann has 3 apples, and buys 4 more -- how many apples does she have", GOOD.solution)
NEAR = Item("s-5", LONG.replace("in a week?", "in one week?"), WEEK.solution)
SIMILAR = Item("s-6", LONG.replace("24 loaves of bread every morning", "30 cakes every evening"),
               "30 * 7 = <<30*7=210>>210\n#### 210")
SOURCE = [GOOD, WEEK, NO_ANSWER, WRONG, COPY, NEAR, SIMILAR]


def test_quality_drops_malformed_wrong_and_copied_items() -> None:
    dropped: Counter[str] = Counter()
    kept = quality(SOURCE, dropped)
    assert [i.id for i in kept] == ["s-0", "s-1", "s-6"]
    assert dropped == {"no_final_answer": 1, "wrong_calculation": 1, "exact_duplicate": 1, "near_duplicate": 1}
    # The threshold, where the two sides fall: one changed phrase is a near copy, another story is not.
    assert jaccard(shingles(NEAR.question), shingles(WEEK.question)) >= NEAR_DUPLICATE
    assert jaccard(shingles(SIMILAR.question), shingles(WEEK.question)) < NEAR_DUPLICATE


def test_difficulty_drops_what_a_baseline_solved() -> None:
    dropped: Counter[str] = Counter()
    assert difficulty([GOOD, WEEK, SIMILAR], {"s-1", "not-in-source"}, dropped) == [GOOD, SIMILAR]
    assert dropped == {"solved_by_baseline": 1}


TWO_STEP = Item("d-2", "Eve buys 12 packs of 2 cards and gives 5 away. How many cards are left?",
                "12 * 2 = <<12*2=24>>24 cards.\n24 - 5 = <<24-5=19>>19\n#### 19")
DISTRACTED = Item("d-1", "Tom has 5 pens and 9 pencils. He buys 3 more pens. How many pens?",
                  "5 + 3 = <<5+3=8>>8\n#### 8")


def test_density_counts_steps_operations_and_distractors() -> None:
    # Tom: 1 step, {add}, the 9 pencils unused: 1 + 1 + 1. Eve: 2 steps, {multiply, subtract}, none unused.
    assert (steps(DISTRACTED), sorted(operations(DISTRACTED)), distractors(DISTRACTED)) == (1, ["add"], 1)
    assert (steps(TWO_STEP), sorted(operations(TWO_STEP)), distractors(TWO_STEP)) == (2, ["multiply", "subtract"], 0)
    assert (density(GOOD), density(DISTRACTED), density(TWO_STEP)) == (2, 3, 4)
    # Stated calculations count where a reference has no <<…>> annotations.
    assert steps(Item("x", "q", "3 + 4 = 7 and 7 * 2 = 14\n#### 14")) == 2
    dropped: Counter[str] = Counter()
    assert dense([GOOD, DISTRACTED, TWO_STEP], min_density=3, top_k=None, dropped=dropped) == [DISTRACTED, TWO_STEP]
    assert dense([GOOD, DISTRACTED, TWO_STEP], min_density=None, top_k=1, dropped=dropped) == [TWO_STEP]
    assert dropped == {"low_density": 1 + 2}


def test_diversity_spreads_over_strata_and_is_seeded() -> None:
    adds = [Item(f"a-{i}", f"add question {i}", f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}") for i in range(6)]
    mults = [Item(f"m-{i}", f"mult question {i}", f"{i} * 2 = <<{i}*2={2 * i}>>{2 * i}\n#### {2 * i}")
             for i in range(2)]
    items = adds + [TWO_STEP] + mults
    assert {stratum(i) for i in items} == {(1, "add"), (1, "multiply"), (2, "multiply+subtract")}
    chosen = diverse(items, target=5, seed=0)
    # One from each stratum in turn: the rare strata are all taken before the common one fills the rest.
    assert len(chosen) == 5 and TWO_STEP in chosen and set(mults) <= set(chosen)
    assert chosen == diverse(items, target=5, seed=0)
    assert {frozenset(i.id for i in diverse(items, target=5, seed=s)) for s in range(6)} != {frozenset(
        i.id for i in chosen)}  # another seed, another sample of the common stratum


def test_curate_counts_each_stage_and_is_reproducible() -> None:
    first = curate(SOURCE, target=2, seed=3, solved={"s-6"})
    assert first.counts.stages == [("source", 7), ("quality", 3), ("difficulty", 2), ("diversity", 2)]
    again = curate(list(SOURCE), target=2, seed=3, solved={"s-6"})
    assert again.sha256 == first.sha256 and again.jsonl == first.jsonl
    assert [json.loads(line)["id"] for line in first.jsonl.decode().splitlines()] == ["s-0", "s-1"]


def test_too_few_survivors_fail_with_every_stage_count() -> None:
    with pytest.raises(FatalJobError) as failed:
        curate(SOURCE, target=3, seed=0, solved={"s-0"})
    message = str(failed.value)
    assert message.startswith("curate.target: 3 asked but only 2 items survive the filters")
    assert "source 7, quality 3, difficulty 2" in message and "solved_by_baseline 1" in message


# --------------------------------------------------------------------------- the sweep and the queue path


def source_rows() -> list[dict[str, str]]:
    rows = [{"question": f"Shop {i} sells {i + 2} pens on Monday and {i + 5} pens on Tuesday to the pupils. "
                         f"Then it sells {i} more. How many pens in all?",
             "answer": f"{i + 2} + {i + 5} = <<{i + 2}+{i + 5}={2 * i + 7}>>{2 * i + 7}\n"
                       f"{2 * i + 7} + {i} = <<{2 * i + 7}+{i}={3 * i + 7}>>{3 * i + 7}\n#### {3 * i + 7}"}
            for i in range(8)]
    rows.append({"question": "Cid buys 3 boxes of 4 eggs. How many eggs?", "answer": "3 * 4 = <<3*4=13>>13\n#### 13"})
    return rows


def write_sweep(tmp_path: Path, model_dir: Path, *, target: int, baselines: bool = True) -> Path:
    source = tmp_path / "source.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in source_rows()), encoding="utf-8")
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    baseline = f"  baselines: [{{model: {{id: {model_dir}}}, max_new_tokens: 4}}]\n" if baselines else ""
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"name: curated\nseed: 1\nmodel: {{id: {model_dir}}}\ndataset: {{name: gsm8k, path: {evals}}}\n"
        f"curate:\n  name: mini\n  source: {{name: gsm8k, path: {source}}}\n  target: {target}\n  seed: 5\n{baseline}"
        "train: {method: lora, lora_rank: 2, traces: 4, batch_size: 2, max_length: 96, source: {curated: mini}}\n"
        "eval: {max_new_tokens: 4, batch_size: 2, include_base: false}\n",
        encoding="utf-8",
    )
    return path


def test_a_sweep_curates_then_trains_on_the_curated_set(
    tmp_path: Path, embedded_db: Path, tiny_model: TinyModel
) -> None:
    from rich.console import Console

    from orchestrator.embedded import run_in_process

    the_plan = plan(write_sweep(tmp_path, tiny_model.path, target=5))
    kinds = [d.kind for d in the_plan.drafts]
    assert kinds == ["eval", "curate", "train", "eval"]  # baseline, curate, train on it, eval of the adapter
    baseline, curate_draft, train, _ = the_plan.drafts
    assert curate_draft.depends_on == (baseline.spec_hash,) and train.depends_on == (curate_draft.spec_hash,)
    assert train.spec["source"] == {"name": "curated", "curated": curate_draft.spec_hash, "n": 20,
                                    "complexity": [1, 4], "seed": 0, "config": "main", "split": "test",
                                    "limit": None, "path": None, "hub": None}
    report = record(the_plan, reload_settings())
    states = run_in_process(report.to_enqueue, Console(quiet=True))
    with session_scope() as session:
        jobs = {job.kind + (":b" if "baseline" in job.label else ""): job for job in session.exec(select(Job))}
        assert all(job.state == "succeeded" for job in jobs.values()), [(j.label, j.error) for j in jobs.values()]
        (dataset,) = session.exec(select(CuratedDataset)).all()
        baseline_predictions = session.exec(select(Prediction).where(Prediction.job_id == jobs["eval:b"].id)).all()
        trained = session.exec(select(TrainResult)).one()
    assert len(states) == 4 and len(baseline_predictions) == 9
    solved = sum(p.correct for p in baseline_predictions)  # a random model: none, or by luck a few
    manifest = dataset.manifest
    assert manifest["counts"] == {"source": 9, "quality": 8, "difficulty": 8 - solved, "diversity": 5}
    assert manifest["baselines"] == [baseline.spec_hash] and manifest["seed"] == 5 and dataset.count == 5
    assert manifest["sha256"] == dataset.sha256 and dataset.name == "mini"
    stored = Path(str(dataset.uri))
    assert json.loads((stored / "manifest.json").read_text()) == manifest
    assert len((stored / "data.jsonl").read_text().splitlines()) == 5
    assert trained.examples == 4  # four of the five curated items (traces: 4)
    from typer.testing import CliRunner

    from orchestrator.cli import app

    listed = CliRunner().invoke(app, ["data", "list", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (shown,) = json.loads(listed.output)
    assert (shown["name"], shown["sha256"], shown["count"]) == ("mini", dataset.sha256, 5)
    table = CliRunner().invoke(app, ["data", "list"])
    assert f"mini  {dataset.sha256[:12]}  5 items  (source 9 → quality 8 → difficulty" in table.output
    # What "solved" reads: the baselines' stored predictions (the majority's answer for a vote).
    from workers.runner import _solved_by_baselines

    with session_scope() as session:
        for prediction in baseline_predictions[:2]:
            session.get_one(Prediction, prediction.id).correct = True
    assert _solved_by_baselines([baseline.spec_hash]) >= {p.question_id for p in baseline_predictions[:2]}
    assert {p.question_id for p in baseline_predictions} == {f"source-{i}" for i in range(9)}  # the curate ids
    # The baseline answered the curate source, not the sweep's questions: never the sweep's reference.
    from db.models import Sweep
    from orchestrator.analysis import analyse

    with session_scope() as session:
        sweep_id = session.exec(select(Sweep)).one().id
        analysed = analyse(session, sweep_ids=[sweep_id])
    assert len(analysed) == 2 and all(a.vs_base is None for a in analysed.values())


def test_a_curate_section_is_checked_at_submit(tmp_path: Path, tiny_model: TinyModel) -> None:
    with pytest.raises(SweepError, match="curate.target: 11 larger than the 9 items in curate.source"):
        plan(write_sweep(tmp_path, tiny_model.path, target=11))
    path = write_sweep(tmp_path, tiny_model.path, target=4)
    path.write_text(path.read_text().replace("{curated: mini}", "{curated: other}"))
    with pytest.raises(SweepError, match="train.source.curated: 'other' is neither this sweep's curated set"):
        plan(path)
    unscorable = tmp_path / "unscorable.jsonl"
    unscorable.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "It is 4."}) + "\n")
    path.write_text(path.read_text().replace("{curated: other}", "{curated: mini}"))
    original = path.read_text()
    path.write_text(original.replace(str(tmp_path / "source.jsonl"), str(unscorable)))
    with pytest.raises(SweepError, match=r"curate.baselines: the baselines answer every item .* unscorable.jsonl:1:"):
        plan(path)
    path.write_text(original)
    no_answers = tmp_path / "questions.jsonl"
    no_answers.write_text(json.dumps({"question": "What is 2 + 2?"}) + "\n")
    path.write_text(path.read_text().replace(str(tmp_path / "source.jsonl"), str(no_answers)))
    with pytest.raises(SweepError, match=r"curate.source.path: questions.jsonl:1: want an object with a `question`"):
        plan(path)
