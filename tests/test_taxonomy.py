"""Failure taxonomy: the safe calculation parser, and a hand-made set of wrong (and right) solutions per label."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import pytest
from sqlmodel import select

from db import crud
from db.crud import JobDraft
from db.migrate import upgrade
from db.models import EvalResult, Job, Prediction
from db.session import session_scope
from jobs.data.question import Question
from jobs.scoring.answers import extract_answer, reference_answer
from jobs.scoring.calculations import CalculationError, evaluate, stated_calculations
from jobs.scoring.records import PredictionRecord
from jobs.scoring.results import EvalOutcome
from jobs.scoring.taxonomy import LABELS, FailureLabel, classify, count_labels, text_has_loop
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from tests.model_fixtures import TinyModel, require_gsm8k

JANET = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her"
    " friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg."
    " How much in dollars does she make every day at the farmers' market?"
)
JANET_ANSWER = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"
ROBE = "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?"
JOSH = (
    "Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in repairs.  This"
    " increased the value of the house by 150%.  How much profit did he make?"
)
JAMES = (
    "James decides to run 3 sprints 3 times a week.  He runs 60 meters each sprint.  How many total meters does he"
    " run a week?"
)
WENDI = (
    "Every day, Wendi feeds each of her chickens three cups of mixed chicken feed. She gives the chickens their feed"
    " in three separate meals. In the morning, she gives her flock of chickens 15 cups of feed.  In the afternoon, she"
    " gives her chickens another 25 cups of feed.  How many cups of feed does she need to give her chickens in the"
    " final meal of the day if the size of Wendi's flock is 20 chickens?"
)
KYLAR = (
    "Kylar went to the store to buy glasses for his new apartment. One glass costs $5, but every second glass costs"
    " only 60% of the price. Kylar wants to buy 16 glasses. How much does he need to pay for them?"
)
TOULOUSE = (
    "Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many sheep as Seattle. How many sheep"
    " do Toulouse, Charleston, and Seattle have together if Seattle has 20 sheep?"
)
CARLA = (
    "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute, but 40% of the way through the"
    " download, Windows forces a restart to install updates, which takes 20 minutes. Then Carla has to restart the"
    " download from the beginning. How long does it take to download the file?"
)
ELIZA = (
    "Eliza's rate per hour for the first 40 hours she works each week is $10. She also receives an overtime pay of 1.2"
    " times her regular hourly rate. If Eliza worked for 45 hours this week, how much are her earnings for this week?"
)
DOWNLOADS = (
    "A new program had 60 downloads in the first month. The number of downloads in the second month was three times"
    " as many as the downloads in the first month, but then reduced by 30% in the third month. How many downloads"
    " did the program have total over the three months?"
)
TOULA = (
    "Toula went to the bakery and bought various types of pastries. She bought 3 dozen donuts which cost $68 per"
    " dozen, 2 dozen mini cupcakes which cost $80 per dozen, and 6 dozen mini cheesecakes for $55 per dozen. How much"
    " was the total cost?"
)
JILL = (
    "Jill gets paid $20 per hour to teach and $30 to be a cheerleading coach. If she works 50 weeks a year, 35 hours a"
    " week as a teacher and 15 hours a week as a coach, what's her annual salary?"
)
CLAIRE = "Claire makes a 3 egg omelet every morning for breakfast.  How many dozens of eggs will she eat in 4 weeks?"
DOGS = (
    "John takes care of 10 dogs.  Each dog takes .5 hours a day to walk and take care of their business.  How many"
    " hours a week does he spend taking care of dogs?"
)
TERRY = (
    "Terry eats 2 yogurts a day.  They are currently on sale at 4 yogurts for $5.00.  How much does he spend on yogurt"
    " over 30 days?"
)
DANCE = (
    "In a dance class of 20 students, 20% enrolled in contemporary dance, 25% of the remaining enrolled in jazz dance,"
    " and the rest enrolled in hip-hop dance. What percentage of the entire students enrolled in hip-hop dance?"
)
MIKE = (
    "Mike plays ping pong for 40 minutes.  In the first 20 minutes, he scores 4 points.  In the second 20 minutes, he"
    " scores 25% more points.  How many total points did he score?"
)
RICE = "A bag holds 2.5 kg of rice. How many grams of rice are there in 4 bags?"
SAVER = "Sam saves $15 every week. How much does he save in a year?"


@dataclass(frozen=True)
class Case:
    name: str
    question: str
    answer: str  # the reference: a GSM8K solution ending `#### N`, or the number
    output: str
    label: str | None  # expected; None: a correct output, never labelled
    truncated: bool = False
    readings: dict[str, str] = field(default_factory=dict)
    reading: str | None = None  # expected known reading
    evidence: str = ""  # a fragment the evidence must contain


def loop_of(sentence: str, times: int) -> str:
    return " ".join([sentence] * times)


WRONG: list[Case] = [
    # ------------------------------------------------------------------ format: no number at all
    Case("format-refusal", JANET, JANET_ANSWER, "I'm sorry, but I can't determine that without more information.",
         "format"),
    Case("format-words", ROBE, "#### 3", "The robe needs blue fiber and white fiber. Add them to get the total.",
         "format"),
    Case("format-spelled", JANET, JANET_ANSWER, "She makes twenty-two dollars every day.", "format"),
    Case("format-empty", TOULOUSE, "#### 260", "", "format"),
    Case("format-placeholder", KYLAR, "#### 64", "Let's think step by step.\n#### <answer>", "format"),
    Case("format-before-truncated", CARLA, "#### 160", "First, we need to find out how long the download", "format",
         truncated=True),
    # ------------------------------------------------------------------ truncated: hit the token cap
    Case("truncated-mid-step", JANET, JANET_ANSWER,
         "Janet's ducks lay 16 eggs per day. She eats 3 for breakfast, so 16 - 3 = 13 eggs are left. She bakes"
         " muffins with 4 eggs, so", "truncated", truncated=True),
    Case("truncated-before-answer", JOSH, "#### 70000",
         "The total cost is 80,000 + 50,000 = 130,000. The value increased by 150%, so the increase is"
         " 80,000 \u00d7 1.5 = 120,000. So the new value is", "truncated", truncated=True),
    Case("truncated-despite-slip", JAMES, "#### 540",
         "He runs 3 * 3 = 8 sprints a week. Each sprint is 60 meters, so in total he runs", "truncated",
         truncated=True),
    Case("truncated-latex", WENDI, "#### 20",
         "Each chicken eats 3 cups a day, so the flock needs \\( 3 \\times 20 = 60 \\) cups. In the morning and",
         "truncated", truncated=True),
    # ------------------------------------------------------------------ loop: a block repeated back to back
    Case("loop-sentence", JANET, JANET_ANSWER, "16 - 3 = 13 eggs. " + loop_of("She has 16 - 3 = 13 eggs left.", 12),
         "loop"),
    Case("loop-token", TOULOUSE, "#### 260", "The answer is " + " ".join(["5"] * 60), "loop"),
    Case("loop-wait", KYLAR, "#### 64",
         "16 / 2 = 8 glasses. " + loop_of("Wait, let me check again: 8 glasses at $5 is 40.", 8), "loop"),
    Case("loop-long-block", CARLA, "#### 160",
         loop_of("Carla downloads 2 GB every minute, so 200 GB takes 200 / 2 = 100 minutes and then she restarts"
                 " the download from the beginning because Windows forces a restart.", 4), "loop"),
    # ------------------------------------------------------------------ arithmetic: a stated calculation is wrong
    Case("arithmetic-chain", JANET, JANET_ANSWER, "16 - 3 - 4 = 8 eggs are left. 8 * $2 = $16.\n#### 16",
         "arithmetic", evidence="16 - 3 - 4 = 8 (is 9)"),
    Case("arithmetic-annotated", JOSH, "#### 70000",
         "80000+50000=<<80000+50000=130000>>130000\n80000*1.5=<<80000*1.5=120000>>120000\n"
         "120000+80000=<<120000+80000=200000>>200000\n200000-130000=<<200000-130000=60000>>60000\n#### 60000",
         "arithmetic", evidence="200000-130000 = 60000 (is 70000)"),
    Case("arithmetic-times-sign", JAMES, "#### 540",
         "He runs 3 \u00d7 3 = 6 sprints a week. 6 \u00d7 60 = 360 meters. The answer is 360.", "arithmetic",
         evidence="3 \u00d7 3 = 6 (is 9)"),
    Case("arithmetic-percent-of", KYLAR, "#### 64",
         "60% of $5 is $3.50. Half of the 16 glasses are cheaper: 16 / 2 = 8. 8 x $3.50 = $28 and 8 x $5 = $40."
         " $28 + $40 = $68.\n#### 68", "arithmetic", evidence="60% of $5 = $3.50 (is 3)"),
    Case("arithmetic-long-chain", TOULA, "#### 694",
         "3 x 68 + 2 x 80 + 6 x 55 = 204 + 160 + 330 = 684.\n#### 684", "arithmetic",
         evidence="204 + 160 + 330 = 684 (is 694)"),
    Case("arithmetic-latex", WENDI, "#### 20",
         "The flock needs \\( 20 \\times 3 = 60 \\) cups a day. The last meal is \\( 60 - 15 - 25 = 30 \\) cups."
         "\n\\boxed{30}", "arithmetic", evidence="60 - 15 - 25 = 30 (is 20)"),
    Case("arithmetic-percent-result", DANCE, "#### 60",
         "20% of 20 = 4 students. 20 - 4 = 16 remain. 25% of 16 = 4 in jazz. 16 - 4 = 12 in hip-hop."
         " 12/20 = 65%.\n#### 65", "arithmetic", evidence="12/20 = 65% (is 60%)"),
    Case("arithmetic-units-in-line", ELIZA, "#### 460",
         "Overtime rate: $10 x 1.2 = $12 per hour. 5 hours x $12 = $60. 40 hours x $10 = $400."
         " Total: $400 + $60 = $450.\n#### 450", "arithmetic", evidence="$400 + $60 = $450 (is 460)"),
    Case("arithmetic-over-known-reading", JOSH, "#### 70000",
         "150% of 80,000 = 110,000, so the house is worth 110,000 + 80,000 = 190,000 and the profit is"
         " 190,000 - 130,000 = 60,000. #### 60000", "arithmetic",
         readings={"percent_of_instead_of_more": "60000"}, evidence="150% of 80,000 = 110,000 (is 120000)"),
    # ------------------------------------------------------------------ unit: the right quantity at another scale
    Case("unit-dozens", CLAIRE, "#### 7", "3 eggs x 7 days = 21 eggs a week. 21 x 4 = 84 eggs.\n#### 84", "unit",
         evidence="\u00d7 12"),
    Case("unit-days-weeks", DOGS, "#### 35", "He spends 10 x 0.5 = 5 hours a day.\n#### 5", "unit",
         evidence="\u00f7 7"),
    Case("unit-cents", TERRY, "#### 75",
         "2 x 30 = 60 yogurts. 60 / 4 = 15 packs. 15 x $5.00 = $75.00, which is 7500 cents.\n#### 7500", "unit",
         evidence="\u00d7 100"),
    Case("unit-missed-percent", DANCE, "#### 60",
         "20 x 0.2 = 4 in contemporary, 20 - 4 = 16 left, 16 x 0.25 = 4 in jazz, 16 - 4 = 12 in hip-hop."
         " 12 / 20 = 0.6.\n#### 0.6", "unit", evidence="\u00f7 100"),
    Case("unit-hours", CARLA, "#### 160",
         "200 x 0.4 = 80 GB before the restart: 80 / 2 = 40 minutes. Then 200 / 2 = 100 minutes. 40 + 100 + 20 ="
         " 160 minutes, which is 160 / 60 = 2.67 hours.\n#### 2.67", "unit", evidence="\u00f7 60"),
    Case("unit-grams", RICE, "#### 10000", "2.5 x 4 = 10 kg of rice.\n#### 10", "unit", evidence="\u00f7 1000"),
    # ------------------------------------------------------------------ copied_number: a number of the question
    Case("copied-price", JANET, JANET_ANSWER, "Janet sells each egg for $2.\n#### 2", "copied_number"),
    Case("copied-bolts", ROBE, "#### 3", "The robe takes 2 bolts of blue fiber. #### 2", "copied_number"),
    Case("copied-given", TOULOUSE, "#### 260", "Seattle has 20 sheep.\n#### 20", "copied_number"),
    Case("copied-percent", JOSH, "#### 70000", "The value of the house increased by 150%.\n#### 150", "copied_number"),
    Case("copied-number-word", WENDI, "#### 20", "Each chicken eats three cups. #### 3", "copied_number"),
    Case("copied-after-right-sums", WENDI, "#### 20",
         "15 + 25 = 40 cups in the first two meals. The afternoon meal is the biggest, 25 cups.\n#### 25",
         "copied_number"),
    # ------------------------------------------------------------------ relationship, exact: a known wrong reading
    Case("reading-percent-of", JOSH, "#### 70000",
         "80,000 + 50,000 = 130,000. 150% of 80,000 = 120,000, so the house is now worth 120,000."
         " Profit = 120,000 - 130,000 = -10,000.\n#### -10000", "relationship",
         readings={"percent_of_instead_of_more": "-10000"}, reading="percent_of_instead_of_more"),
    Case("reading-dropped-step", JANET, JANET_ANSWER, "16 - 3 = 13 eggs are left. 13 x 2 = 26.\n#### 26",
         "relationship", readings={"dropped_step": "26"}, reading="dropped_step"),
    Case("reading-full-price", KYLAR, "#### 64", "16 x $5 = $80.\n#### 80", "relationship",
         readings={"dropped_step": "80", "swapped_relation": "72"}, reading="dropped_step"),
    Case("reading-beats-unit-and-copy", SAVER, "#### 780", "Sam saves $15 a week.\n#### 15", "relationship",
         readings={"dropped_step": "15"}, reading="dropped_step"),
    Case("reading-swapped", TOULOUSE, "#### 260",
         "Charleston has 20 / 4 = 5 sheep and Toulouse 5 / 2 = 2.5. Together 20 + 5 + 2.5 = 27.5 sheep.\n#### 27.5",
         "relationship", readings={"swapped_relation": "27.5"}, reading="swapped_relation"),
    # ------------------------------------------------------------------ relationship, heuristic: sums right, set-up wrong
    Case("relationship-weekly", JILL, "#### 57500",
         "$20 x 35 = $700 a week teaching. $30 x 15 = $450 a week coaching. $700 + $450 = $1,150 per week.\n#### 1150",
         "relationship"),
    Case("relationship-no-total", TOULOUSE, "#### 260",
         "Charleston has 4 x 20 = 80 sheep. Toulouse has 2 x 80 = 160 sheep.\n#### 160", "relationship"),
    Case("relationship-wrong-operation", JANET, JANET_ANSWER,
         "16 - 3 - 4 = 9 eggs are left. 9 + 2 = 11 dollars.\n#### 11", "relationship"),
    Case("relationship-reduced-to", DOWNLOADS, "#### 366",
         "3 x 60 = 180 in the second month. 30% of 180 = 54 in the third month. 60 + 180 + 54 = 294.\n#### 294",
         "relationship"),
    Case("relationship-more-only", MIKE, "#### 9", "25% of 4 = 1 more point. 4 + 1 = 5 points.\n#### 5",
         "relationship"),
    # ------------------------------------------------------------------ other: none of the above
    Case("other-bare", JANET, JANET_ANSWER, "#### 20", "other"),
    Case("other-no-calculation", ROBE, "#### 3", "It takes 5 bolts in total.", "other"),
    Case("other-words-only", TOULOUSE, "#### 260",
         "Charleston has eighty sheep and Toulouse twice that, so together they have 250 sheep.", "other"),
    Case("other-guess", TERRY, "#### 75", "He spends about $60 on yogurt.\n#### 60", "other"),
    # ------------------------------------------------------------------ SmolLM2-135M's own failures (GSM8K test)
    Case("smollm2-compound-unit", DOGS, "#### 35",
         "Step 1: First, find the total number of hours John takes care of his business.\n\nTotal hours = 10 dogs *"
         " 1.5 hours/dog = 15 hours\n\nStep 2: Next, find the number of hours John spends taking care of his"
         " business.\n\nNumber of hours spent = Total hours / Number of dogs\nNumber of hours spent = 15 hours / 10"
         " dogs\nNumber of hours spent = 1.5 hours\n\nSo, John spends 1.5 hours per week on his business.",
         "relationship"),
    Case("smollm2-units-per-week", "John runs 60 miles a week. He runs 3 days a week.  He runs 3 hours the first day"
         " and half as much the other two days he runs.  How fast does he run?", "#### 10",
         "John runs 60 miles per week * 3 days a week * 1.5 hours per day * 1.5 hours per day * 2 days per week ="
         " 1800 miles per week.\n\nHe runs 60 miles per week * 3 days a week * 1.5 hours per day * 2 days per week ="
         " 1800 miles per week.\n\nTo find the speed, we need to divide the distance by the time. So, 1800 miles per"
         " week / 2 hours per day * 1.5 hours per day = 1800 miles per hour.\n\nSo, the answer is 1800.",
         "arithmetic", evidence="= 1800 (is 810)"),
    Case("smollm2-rounded-product", "Dana can skip at 3 miles per hour. How many miles can she travel in six hours"
         " if she spends one-third of the time running and two-thirds of the time walking?", "#### 18",
         "So, the answer is 1.6 * 4 = 6.\n\nThe answer is 6.", "arithmetic", evidence="1.6 * 4 = 6 (is 6.4)"),
    Case("smollm2-gold-coins", "Gretchen has 110 coins. There are 30 more gold coins than silver coins. How many gold"
         " coins does Gretchen have?", "#### 70",
         "Step 2: Since Gretchen has 110 coins, she has 110 * 2 = 220 silver coins.\n\nStep 4: Since Gretchen has"
         " 220 silver coins, she has 220 - 110 = 10 gold coins.\n\nStep 7: This is the final answer: 10 gold coins +"
         " 220 silver coins = 220 gold coins.\n\nSo, Gretchen has 220 gold coins.", "arithmetic",
         evidence="220 - 110 = 10 (is 110)"),
    Case("smollm2-restated-lines", "Richard lives in an apartment building with 15 floors. Each floor contains 8"
         " units, and 3/4 of the building is occupied. What's the total number of unoccupied units In the building?",
         "#### 30",
         "Step 1: Determine the total number of floors in the building.\nTotal number of floors = 15 * 8 = 120\n\n"
         "Step 2: Determine the number of unoccupied units in the building.\nNumber of unoccupied units = Total"
         " number of floors / 8\nNumber of unoccupied units = 120 / 8\nNumber of unoccupied units = 16\n\nFinal"
         " answer: 16", "arithmetic", evidence="120 / 8 = 16 (is 15)"),
]

RIGHT: list[Case] = [
    Case("right-annotated", JANET, JANET_ANSWER, JANET_ANSWER, None),
    Case("right-latex", JANET, JANET_ANSWER,
         "She has \\( 16 - 3 - 4 = 9 \\) eggs left and earns \\( 9 \\times \\$2 = \\$18 \\).\n\\boxed{18}", None),
    Case("right-commas", JOSH, "#### 70000",
         "Cost: 80,000 + 50,000 = 130,000. Increase: 1.5 \u00d7 80,000 = 120,000. New value: 200,000."
         " Profit: 200,000 - 130,000 = 70,000.\n#### 70,000", None),
    Case("right-percent", KYLAR, "#### 64", "60% of $5 = $3. 16 / 2 = 8. 8 \u00d7 3 + 8 \u00d7 5 = 24 + 40 = 64.",
         None),
    Case("right-plain", ROBE, "#### 3", "The answer is 3.", None),
    Case("right-despite-slip", JAMES, "#### 540", "3 x 3 = 6... no, 3 x 3 = 9 sprints. 9 x 60 = 540.\n#### 540",
         None),
    Case("right-decimals", JANET, JANET_ANSWER, "She earns $18.00 a day.\n#### $18.00", None),
    Case("right-percent-answer", DANCE, "#### 60", "12/20 \u00d7 100% = 60%.\n#### 60%", None),
    Case("right-truncated-after-answer", CARLA, "#### 160",
         "80 / 2 = 40, 200 / 2 = 100, 40 + 100 + 20 = 160 minutes.\n#### 160\nNow let us check this by", None,
         truncated=True),
    Case("right-number-only", TOULOUSE, "260", "#### 260", None),
]


def label(case: Case) -> FailureLabel | None:
    """What `orchestrator classify` does with one line."""
    reference = case.answer if "####" in case.answer else f"#### {case.answer}"
    return classify(
        question=case.question,
        reference=reference_answer(reference),
        output=case.output,
        extracted=extract_answer(case.output),
        truncated=case.truncated,
        loop=text_has_loop(case.output),
        wrong_readings=case.readings,
    )


# ----------------------------------------------------------------------------- the hand-made set


def test_every_label_has_hand_made_cases() -> None:
    assert set(LABELS) == {c.label for c in WRONG}
    assert all(sum(c.label == name for c in WRONG) >= 4 for name in LABELS)


@pytest.mark.parametrize("case", WRONG, ids=lambda c: c.name)
def test_wrong_solution_gets_its_label(case: Case) -> None:
    found = label(case)
    assert found is not None
    assert (found.label, found.reading) == (case.label, case.reading), found.evidence
    assert found.exact is (case.reading is not None)
    assert case.evidence in found.evidence
    assert found.evidence


@pytest.mark.parametrize("case", RIGHT, ids=lambda c: c.name)
def test_right_solution_is_not_labelled(case: Case) -> None:
    assert label(case) is None


def test_agreement_per_label_on_the_hand_made_set() -> None:
    agreed = Counter(c.label for c in WRONG if (found := label(c)) is not None and found.label == c.label)
    totals = Counter(c.label for c in WRONG)
    assert agreed == totals, {name: f"{agreed[name]}/{totals[name]}" for name in LABELS}


def test_counts_follow_the_label_order_and_skip_correct_answers() -> None:
    counts = count_labels([label(c) for c in WRONG + RIGHT])
    assert list(counts) == list(LABELS)
    assert sum(counts.values()) == len(WRONG)
    assert count_labels([None, FailureLabel("unit", False, "x"), FailureLabel("format", False, "y")]) == {
        "format": 1, "unit": 1,
    }
    assert count_labels([None]) == {}


# ----------------------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", Fraction(7)),
        ("(1 + 2) * 3", Fraction(9)),
        ("2(3 + 4)", Fraction(14)),
        ("16 - 3 - 4", Fraction(9)),
        ("-3 + 5", Fraction(2)),
        ("10 / 4", Fraction(5, 2)),
        ("$1,234.50 x 2", Fraction(2469)),
        ("7 \u00d7 6 \u00f7 3", Fraction(14)),
        ("20% * 50", Fraction(10)),
        ("0.1 + 0.2", Fraction(3, 10)),  # exact: no float rounding
    ],
)
def test_evaluate(expression: str, value: Fraction) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch {marker}')",
        "exec(\"open('{marker}', 'w')\")",
        "eval('__import__(\"pathlib\").Path(\"{marker}\").touch()')",
        "open('{marker}', 'w').write('1')",
        "(lambda: 1)()",
        "().__class__.__bases__[0].__subclasses__()",
        "2 ** 10 ** 10",
        "9" * 5000,
        "(" * 500 + "1" + ")" * 500,
        "1 / 0",
        "",
    ],
)
def test_the_parser_never_executes_model_text(text: str, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    text = text.replace("{marker}", str(marker))
    with pytest.raises(CalculationError):
        evaluate(text)
    # Inside a solution such text is no calculation: only the arithmetic after it is read, and nothing runs.
    assert [str(c) for c in stated_calculations(f"{text} = 3\n2 + 2 = 4")] == ["2 + 2 = 4"]
    assert not marker.exists()


def test_the_parser_module_has_no_way_to_run_code() -> None:
    import ast
    import inspect

    import jobs.scoring.calculations as calculations

    tree = ast.parse(inspect.getsource(calculations))
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__", "getattr", "globals", "vars", "open"}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                for alias in node.names} | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"ast", "builtins", "importlib", "subprocess", "os"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16 - 3 - 4 = <<16-3-4=9>>9 eggs", ["16-3-4 = 9"]),
        ("9 eggs * $2 = $17", ["9 eggs * $2 = $17 (is 18)"]),
        ("3 times 4 is 12", ["3 times 4 = 12"]),
        ("2 * 3 = 6 * 4 = 25", ["2 * 3 = 6", "6 * 4 = 25 (is 24)"]),
        ("3 + 4 + 5 = 12 + 8 = 20", ["3 + 4 + 5 = 12", "12 + 8 = 20"]),
        ("20% of 50 = 10", ["20% of 50 = 10"]),
        ("30/120 = 25%", ["30/120 = 25%"]),
        ("(30/120)*100 = 25%", ["(30/120)*100 = 25%"]),
        ("12 / 18 * 100% = 66.67%", ["12 / 18 * 100% = 66.67%"]),
        ("50 + 10% = 55", ["50 + 10% = 55"]),
        ("10/3 = 3.33 and 2/3 = 0.66", ["10/3 = 3.33", "2/3 = 0.66"]),
        ("1 1/2 * 60 = 90 minutes", ["1 1/2 * 60 = 90"]),
        ("60 / 3/4 = 80", ["60 / 3/4 = 80"]),
        ("250 x 12 = 3 000 grams", ["250 x 12 = 3 000"]),
        ("$3 \\times 4 = 12$ and **5 + 5 = 11**", ["$3 * 4 = 12", "5 + 5 = 11 (is 10)"]),
        ("2) 3 + 4 = 7", ["3 + 4 = 7"]),
        ("3 - 5 = -2", ["3 - 5 = -2"]),
        ("1,000 * 3 = 3,000.", ["1,000 * 3 = 3,000"]),
        # Algebra, times, labels and answers are not calculations.
        ("3x + 4 = 28", []),
        ("X*2 - $40 = $250", []),
        ("She arrived at 6:00+18 hours = 00:00", []),
        ("The answer is 5.", []),
        ("3*30 = 30 + M trees", []),
        ("the stadium is 3/4 full is 1500", []),
        ("16/2=8", ["16/2 = 8"]),
        ("10 dogs * 1.5 hours/dog = 15 hours", ["10 dogs * 1.5 = 15"]),
        ("80 GB / 2 GB/minute = 40 minutes", ["80 GB / 2 = 40"]),
        ("$0.25/glass x 10 glasses = 250 cents", ["$0.25/glass x 10 = 250"]),
        ("3 days a week * 2 = 6 but 3a + 1 = 7", ["3 days a week * 2 = 6"]),
        ("1.6 * 4 = 6 but 100 stickers / 3 = 33", ["1.6 * 4 = 6 (is 6.4)", "100 stickers / 3 = 33"]),
        ("8/3 = 24/Y", []),
        ("Number of times = 288 / 7\nNumber of times = 41", ["288 / 7 = 41"]),
        ("Cost = 42 * 7\nCost = 288\nThus, x >= 2250 - 2146\nThus, x >= 94", ["42 * 7 = 288 (is 294)"]),
    ],
)
def test_stated_calculations(text: str, expected: list[str]) -> None:
    assert [str(c) for c in stated_calculations(text)] == expected


def test_reference_solutions_of_gsm8k_test_are_nearly_all_right() -> None:
    # GSM8K's own solutions: every calculation right but a handful of genuine slips in the data.
    path = require_gsm8k()
    found = wrong = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        calculations = stated_calculations(json.loads(line)["answer"])
        found += len(calculations)
        wrong += sum(not c.correct for c in calculations)
    assert found > 4400
    assert wrong <= 2, wrong  # "$32 - $20 = $300" is wrong in the data itself, "50% of 8 is 1.5*8" sloppy


def test_text_loop_detector() -> None:
    assert text_has_loop(loop_of("She has 13 eggs left.", 12))
    assert not text_has_loop(JANET_ANSWER)
    assert not text_has_loop(" ".join(f"Step {i}: {i} + 1 = {i + 1}." for i in range(40)))


# ----------------------------------------------------------------------------- the eval job and the database


def record(question: str, reference: str, output: str, **fields: object) -> PredictionRecord:
    extracted = extract_answer(output)
    base: dict = dict(
        question_id=fields.pop("question_id", "q1"), question=question, reference_answer=reference, raw_output=output,
        extracted_answer=extracted, correct=extracted == reference, output_tokens=10, latency_s=0.1, complexity=2,
    )
    return PredictionRecord(**(base | fields))


def test_eval_labels_every_wrong_record_with_its_questions_readings() -> None:
    from jobs.eval import label_failures

    questions = [
        Question(id="q1", question=JANET, answer="18", solution=JANET_ANSWER, complexity=2,
                 wrong_readings=(("dropped_step", "26"),)),
        Question(id="q2", question=ROBE, answer="3", solution="#### 3", complexity=2),
    ]
    records = [
        record(JANET, "18", "16 - 3 = 13. 13 x 2 = 26.\n#### 26"),
        record(ROBE, "3", "#### 3", question_id="q2"),
        record(ROBE, "3", "It is 2 + 1 = 4 bolts", question_id="q2", truncated=True),
        record(JANET, "18", "9 * 2 = 18 " * 40, details={"loop": True}),  # the strategy's token-level flag
    ]
    records[3] = replace(records[3], extracted_answer="17", correct=False)
    labelled = label_failures(records, questions)
    assert [(r.failure.label, r.failure.reading) if r.failure else None for r in labelled] == [
        ("relationship", "dropped_step"), None, ("truncated", None), ("loop", None),
    ]
    outcome = EvalOutcome.from_predictions(labelled, wall_s=1.0, peak_memory_mb=1.0, memory_kind="rss", device="cpu")
    assert outcome.taxonomy == {"truncated": 1, "loop": 1, "relationship": 1}


def test_eval_job_on_the_tiny_model_labels_its_wrong_answers(tiny_model: TinyModel) -> None:
    from jobs import eval as eval_job
    from jobs.models.loading import clear_cache

    spec = EvalJobSpec(
        model=ModelSpec(id=str(tiny_model.path)),
        dataset=DatasetSpec(name="synthetic", n=4, complexity=(1, 2), seed=0, relations=["percent_more", "times"]),
        strategy=StrategySpec(name="greedy"),
        max_new_tokens=8,
        batch_size=4,
        seed=0,
    )
    outcome = eval_job.run(spec)
    clear_cache()
    wrong = [p for p in outcome.predictions if not p.correct]
    assert all(p.failure is not None and p.failure.label in LABELS for p in wrong)
    assert all(p.failure is None for p in outcome.predictions if p.correct)
    assert sum(outcome.taxonomy.values()) == len(wrong) == outcome.n - outcome.correct


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    url = f"sqlite:///{tmp_path / 'rf.db'}"
    upgrade(url)
    return url


def test_failure_labels_and_counts_are_stored(db_url: str) -> None:
    from workers.results import eval_rows

    labelled = [
        replace(record(JANET, "18", "16 - 3 = 13. 13 x 2 = 26.\n#### 26"),
                failure=FailureLabel("relationship", True, "answer 26 is the dropped_step reading", "dropped_step")),
        replace(record(ROBE, "3", "2 + 1 = 4 \x00", question_id="q2"),
                failure=FailureLabel("arithmetic", False, "2 + 1 = 4 (is 3) \x00")),
        record(ROBE, "3", "#### 3", question_id="q3"),
    ]
    outcome = EvalOutcome.from_predictions(labelled, wall_s=1.0, peak_memory_mb=1.0, memory_kind="rss", device="cpu")
    spec = EvalJobSpec(model=ModelSpec(id="tiny"), dataset=DatasetSpec(name="synthetic", n=3),
                       strategy=StrategySpec(name="greedy"), max_new_tokens=8, batch_size=1, seed=0)
    suffix = uuid.uuid4().hex[:8]
    with session_scope(db_url) as session:
        crud.record_sweep(session, name=f"tax-{suffix}", seed=0, spec={}, spec_hash=f"tax-{suffix}",
                          drafts=[JobDraft(spec_hash=f"tax-job-{suffix}", kind="eval", label="x", spec={})],
                          max_attempts=1)
        job_id = session.exec(select(Job.id).where(Job.spec_hash == f"tax-job-{suffix}")).one()
        result, predictions = eval_rows(job_id, spec, outcome)
        assert crud.insert_eval_result(session, result=result, predictions=predictions)
    with session_scope(db_url) as session:
        stored = session.exec(select(EvalResult).where(EvalResult.job_id == job_id)).one()
        assert stored.taxonomy == {"arithmetic": 1, "relationship": 1}
        rows = session.exec(select(Prediction).where(Prediction.job_id == job_id).order_by(Prediction.question_id)).all()
        assert [(r.failure_label, r.failure_exact, r.failure_reading) for r in rows] == [
            ("relationship", True, "dropped_step"), ("arithmetic", False, None), (None, None, None),
        ]
        assert rows[1].failure_evidence == "2 + 1 = 4 (is 3) \ufffd"  # Postgres text holds no NUL
        assert rows[2].failure_evidence is None
        by_label = session.exec(select(Prediction.question_id).where(Prediction.failure_label == "arithmetic")).all()
        assert "q2" in by_label
