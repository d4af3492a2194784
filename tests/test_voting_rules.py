"""Self-consistency's voting rules (`self_consistency: {invalid_votes, normalise}`): votes under both rules, in
jobs.scoring.voting and through the strategy's record, which keeps the rule's winner and the samples' flags."""

from __future__ import annotations

import pytest

from jobs.data.question import question_from_row
from jobs.generation.rows import Generation
from jobs.scoring.voting import INVALID, majority_vote
from jobs.specs import SelfConsistencyParams, StrategySpec
from jobs.strategies.self_consistency import vote_record

QUESTION = question_from_row({"question": "How many?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}, "q0")


def generations(*texts: str) -> list[Generation]:
    return [Generation(text=t, output_tokens=5, truncated=False, latency_s=0.1, token_ids=(1, 2, 3, 4, 5))
            for t in texts]


def test_skip_ignores_samples_without_an_answer_and_count_lets_them_win() -> None:
    answers = [None, "5", None, "5", None]
    skipped = majority_vote(answers)
    assert (skipped.winner, skipped.counts, skipped.agreement, skipped.winner_index) == ("5", {"5": 2}, 0.4, 1)
    counted = majority_vote(answers, invalid_votes="count")
    assert (counted.winner, counted.counts, counted.agreement, counted.winner_index) == (
        None, {INVALID: 3, "5": 2}, 0.6, 0)
    assert majority_vote([None, None]).winner is None and majority_vote([None, None]).agreement == 0.0


def test_ties_go_to_the_first_seen_under_both_rules() -> None:
    assert majority_vote(["3", None, "4"], invalid_votes="count").winner == "3"
    assert majority_vote([None, "4"], invalid_votes="count").winner is None  # [invalid] came first


SAMPLES = ("#### 2.0", "#### 3", "So 3.\n#### 3", "#### 2", "#### 2.00")  # 2 three times by value, "3" twice as text


def test_numeric_votes_group_by_value() -> None:
    voted = vote_record(QUESTION, generations(*SAMPLES), strategy="self_consistency")
    assert (voted.extracted_answer, voted.correct) == ("2", True)
    assert voted.details["votes"] == {"2": 3, "3": 2}
    assert voted.raw_output == "#### 2.0"  # the first sample that voted for the winner


def test_string_votes_group_by_the_number_as_written() -> None:
    rules = SelfConsistencyParams(n=5, normalise="string")
    voted = vote_record(QUESTION, generations(*SAMPLES), strategy="self_consistency", params=rules)
    assert voted.details["votes"] == {"2.0": 1, "3": 2, "2": 1, "2.00": 1}
    assert (voted.extracted_answer, voted.correct) == ("3", False)  # stored normalised, judged numerically
    assert [s["literal"] for s in voted.details["samples"]] == ["2.0", "3", "3", "2", "2.00"]


def test_counted_invalid_votes_can_leave_a_question_unanswered() -> None:
    texts = ("I am not sure.", "#### 2", "No idea.", "Hmm.", "#### 2")
    skipped = vote_record(QUESTION, generations(*texts), strategy="self_consistency")
    assert (skipped.extracted_answer, skipped.correct, skipped.details["agreement"]) == ("2", True, 0.4)
    rules = SelfConsistencyParams(n=5, invalid_votes="count")
    counted = vote_record(QUESTION, generations(*texts), strategy="self_consistency", params=rules)
    assert (counted.extracted_answer, counted.correct, counted.details["agreement"]) == (None, False, 0.6)
    assert counted.details["votes"] == {INVALID: 3, "2": 2}
    assert counted.raw_output == "I am not sure."  # the first sample that cast the winning vote


def test_samples_record_extraction_flags() -> None:
    voted = vote_record(QUESTION, generations("#### 2\n#### 7", "The answer is 2.\n\nQuestion: x? Answer: 9"),
                        strategy="self_consistency")
    first, second = voted.details["samples"]
    assert (first["answer"], first.get("ambiguous"), first.get("cut")) == ("2", True, None)
    assert (second["answer"], second.get("ambiguous"), second.get("cut")) == ("2", None, True)


@pytest.mark.parametrize("strategy", ["self_consistency", "structured_sc", "sc_reflect"])
def test_rules_are_strategy_parameters_recorded_in_the_label(strategy: str) -> None:
    default = StrategySpec.model_validate({strategy: {}})
    assert "invalid_votes" not in default.params and "normalise" not in default.params  # old hashes unchanged
    lm_eval_like = StrategySpec.model_validate({strategy: {"invalid_votes": "count", "normalise": "string"}})
    assert lm_eval_like.params["invalid_votes"] == "count" and lm_eval_like.params["normalise"] == "string"
    assert lm_eval_like.label == f"{strategy}(invalid_votes=count,normalise=string)"
    with pytest.raises(ValueError, match="invalid_votes"):
        StrategySpec.model_validate({strategy: {"invalid_votes": "drop"}})
