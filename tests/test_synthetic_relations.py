"""Synthetic problems that know their wrong readings (jobs/data/relations.py) and `orchestrator data preview`.

The answers are checked against the computation graph evaluated here, with exact fractions and
nothing of the generator's arithmetic; every `<<a op b=c>>` of a solution against plain arithmetic.
"""

from __future__ import annotations

import re
import time
from fractions import Fraction

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from jobs.data.datasets import load_questions
from jobs.data.relations import Node, Problem, Ref, generate, generate_problems
from jobs.data.synthetic import generate as classic
from jobs.errors import FatalJobError
from jobs.scoring.answers import reference_answer
from jobs.specs import RELATION_NAMES, DatasetSpec, RelationName, job_spec_from_json
from orchestrator.data_preview import data_app
from orchestrator.expand import expand
from orchestrator.sweep import SweepSpec
from tests.test_jobs_datasets import CALC, safe_eval

READING_NAMES = {
    "percent_of_instead_of_more",
    "percent_more_instead_of_of",
    "unconverted_unit",
    "swapped_relation",
    "distractor_used",
    "dropped_step",
}
UNIT_FACTORS = {12, 60, 100}


def graph_value(nodes: tuple[Node, ...] | list[Node]) -> Fraction:
    """The graph's answer, computed here with exact fractions (ZeroDivisionError when a reading divides by 0)."""
    values: list[Fraction] = []
    for node in nodes:
        a, *rest = (values[x.node] if isinstance(x, Ref) else Fraction(x) for x in node.args)
        b = rest[0] if rest else Fraction(0)
        values.append(
            {"value": a, "add": a + b, "sub": a - b, "mul": a * b, "pct": a * b / 100}.get(node.op)
            if node.op != "div"
            else a / b
        )
    return values[-1]


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return generate_problems(3000, complexity=(1, 10), seed=11)


# ----------------------------------------------------------------------------- answers and readings


def test_answers_are_the_graphs_value_computed_independently(problems: list[Problem]) -> None:
    for problem in problems:
        q = problem.question
        assert Fraction(q.answer) == graph_value(problem.nodes), q.id
        assert q.answer.isdigit(), q.id  # whole numbers, as GSM8K's


def test_every_wrong_reading_differs_from_the_answer_and_is_its_rewrite_of_the_graph(problems: list[Problem]) -> None:
    with_readings = 0
    for problem in problems:
        q = problem.question
        readings = dict(q.wrong_readings)
        assert set(readings) <= READING_NAMES
        assert len(readings) == len(q.wrong_readings)  # one answer per reading name
        assert q.answer not in readings.values()
        assert len(set(readings.values())) == len(readings)  # a wrong answer names one reading
        assert [m.name for m in problem.misreadings] == [name for name, _ in q.wrong_readings]
        for misreading, (_, answer) in zip(problem.misreadings, q.wrong_readings, strict=True):
            assert Fraction(answer) == graph_value(misreading.apply(problem.nodes)), (q.id, misreading)
            assert reference_answer(f"#### {answer}") == answer  # normalised as answers are
        with_readings += bool(readings)
    assert with_readings == len(problems)


def test_readings_are_the_rewrites_their_names_say(problems: list[Problem]) -> None:
    for problem in problems:
        for m in problem.misreadings:
            before, after = problem.nodes[m.node], m.replacement
            assert _is(m.name, before, after), (problem.question.id, m, before)


def _is(name: str, before: Node, after: Node) -> bool:
    if name == "dropped_step":  # the step's result is its input
        return after.op == "value" and after.args[0] in before.args and isinstance(after.args[0], Ref)
    if name == "unconverted_unit":  # a conversion by 12, 60 or 100 left out
        return before.op in ("mul", "div") and before.args[1] in UNIT_FACTORS and after.args == before.args[:1]
    if name == "swapped_relation":  # more <-> fewer, times <-> divided by, p% more <-> p% less
        inverse = {"add": "sub", "sub": "add", "mul": "div", "div": "mul"}
        if before.op == "pct":
            return after.op == "pct" and after.args[1] == 200 - before.args[1]  # type: ignore[operator]
        return after.op == inverse[before.op] and after.args == before.args
    if name == "percent_of_instead_of_more":  # x + p% of x read as p% of x
        return (before.op == "add" and after.op == "value" and after.args[0] == before.args[1]) or (
            before.op == "pct" and after.args[1] == before.args[1] - 100  # type: ignore[operator]
        )
    if name == "percent_more_instead_of_of":  # p% of x read as p% more than x
        return before.op == after.op == "pct" and after.args[1] == before.args[1] + 100  # type: ignore[operator]
    # distractor_used: the same step with the decoy's number
    changed = [i for i, (x, y) in enumerate(zip(before.args, after.args, strict=True)) if x != y]
    return after.op == before.op and len(changed) == 1 and isinstance(after.args[changed[0]], int)


# ----------------------------------------------------------------------------- solutions


def test_solutions_are_gsm8k_style_and_their_calculations_add_up(problems: list[Problem]) -> None:
    for problem in problems:
        q = problem.question
        calculations = CALC.findall(q.solution)
        assert q.complexity == len(calculations) == sum(node.op != "value" for node in problem.nodes)
        for expression, result in calculations:
            assert safe_eval(expression) == float(result), (q.id, expression)
        assert q.solution.endswith(f"#### {q.answer}")
        assert reference_answer(q.solution) == q.answer


def test_complexity_is_the_number_of_steps_asked_for() -> None:
    for low, high in [(1, 1), (3, 3), (10, 10), (12, 12), (2, 6)]:
        steps = {q.complexity for q in generate(200, complexity=(low, high), seed=3)}
        assert steps <= set(range(low, high + 1))
        assert low in steps and high in steps


# ----------------------------------------------------------------------------- relations


MARKERS: dict[str, str] = {
    "times": r"(twice|three times|four times|five times) as",
    "fraction": r"(half|one-third|one-quarter|one-fifth) (as|of)",
    "percent_more": r"\d+% (more|longer)",
    "percent_of": r"\d+% (as|of)",
    "fewer": r"\d+ (fewer|minutes less|cents less)",
    "more": r"\d+ (more \w+ than|minutes longer|cents more)",
    "rate": r"(each|per|every minute|cents a minute)",
    "unit": r"(dozen|hours|\$\d)",
}


@pytest.mark.parametrize("relation", sorted(MARKERS))
def test_each_relation_alone_makes_problems_that_use_it(relation: RelationName) -> None:
    for problem in generate_problems(100, complexity=(1, 3), seed=5, relations=[relation]):
        q = problem.question
        assert re.search(MARKERS[relation], q.question), (relation, q.question)
        assert Fraction(q.answer) == graph_value(problem.nodes)


@pytest.mark.parametrize(
    ("relation", "reading"),
    [
        ("percent_more", "percent_of_instead_of_more"),
        ("percent_of", "percent_more_instead_of_of"),
        ("unit", "unconverted_unit"),
    ],
)
def test_a_relation_brings_its_classic_misreading(relation: RelationName, reading: str) -> None:
    questions = generate(200, complexity=(1, 4), seed=2, relations=[relation])
    assert sum(reading in dict(q.wrong_readings) for q in questions) >= 0.9 * len(questions)


def test_distractors_add_a_decoy_whose_number_is_a_reading() -> None:
    plain = generate(200, complexity=(2, 2), seed=4, relations=["more", "times"])
    decoyed = generate(200, complexity=(2, 2), seed=4, relations=["more", "times", "distractor"])
    assert not any("distractor_used" in dict(q.wrong_readings) for q in plain)
    assert sum("distractor_used" in dict(q.wrong_readings) for q in decoyed) >= 0.9 * len(decoyed)
    # The decoy is a sentence about someone the solution never mentions.
    for q in decoyed:
        people = set(re.findall(r"\b[A-Z][a-z]+\b", q.question)) - {"How", "At"}
        assert people - set(re.findall(r"\b[A-Z][a-z]+\b", q.solution)), q.question


def test_questions_vary_in_names_objects_and_sentences() -> None:
    questions = generate(1000, complexity=(1, 4), seed=0)
    names = {word for q in questions for word in re.findall(r"\b[A-Z][a-z]+\b", q.question)}
    asks = {q.question.rsplit(". ", 1)[-1] for q in questions}
    openings = {re.sub(r"\d+", "N", q.question.split(".")[0].split(" ", 1)[1]) for q in questions}
    assert len(names) >= 30 and len(asks) >= 100 and len(openings) >= 15


def test_a_relation_set_too_narrow_for_the_complexity_is_refused_with_its_names() -> None:
    with pytest.raises(ValueError, match=r"relations \[fraction\] made no 12-step problem"):
        generate(5, complexity=(12, 12), relations=["fraction"])
    spec = DatasetSpec(name="synthetic", n=5, complexity=(12, 12), relations=["fraction"])
    with pytest.raises(FatalJobError, match="dataset.relations: "):
        load_questions(spec)


# ----------------------------------------------------------------------------- seeds and speed


def test_same_seed_same_problems_and_a_prefix_of_more() -> None:
    first = generate(50, complexity=(1, 6), seed=9)
    assert first == generate(50, complexity=(1, 6), seed=9)
    assert first[:20] == generate(20, complexity=(1, 6), seed=9)
    assert first != generate(50, complexity=(1, 6), seed=10)
    assert len({q.id for q in first}) == 50


def test_ten_thousand_problems_in_a_few_seconds() -> None:
    started = time.perf_counter()
    questions = generate(10_000, complexity=(1, 10), seed=1)
    elapsed = time.perf_counter() - started
    assert len(questions) == 10_000
    assert elapsed < 15, f"{elapsed:.1f} s"  # about 2 s on one core; slack for a busy CI machine


# ----------------------------------------------------------------------------- the spec and the loader


def test_relations_unset_keeps_the_classic_chains_and_the_stored_form() -> None:
    spec = DatasetSpec(name="synthetic", n=7, complexity=(1, 4), seed=3)
    assert "relations" not in spec.model_dump(mode="json")  # so existing content hashes stay
    assert load_questions(spec) == classic(7, complexity=(1, 4), seed=3)
    assert all(q.wrong_readings == () for q in load_questions(spec))
    assert spec.label == "synthetic(n=7,c=1-4,seed=3)"


def test_relations_all_and_lists_are_stored_in_one_canonical_form() -> None:
    every = DatasetSpec(name="synthetic", relations="all")  # type: ignore[arg-type]
    assert every.relations == list(RELATION_NAMES)
    assert every.model_dump(mode="json")["relations"] == list(RELATION_NAMES)
    assert every.label.endswith(",relations=all)")
    some = DatasetSpec(name="synthetic", relations=["unit", "percent_more", "unit"])
    assert some.relations == ["percent_more", "unit"]
    assert some == DatasetSpec(name="synthetic", relations=["percent_more", "unit"])
    assert some.label == "synthetic(n=20,c=1-4,seed=0,relations=percent_more+unit)"
    assert DatasetSpec.model_validate(some.model_dump(mode="json")) == some


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "synthetic", "relations": ["distractor"]}, "besides `distractor`"),
        ({"name": "synthetic", "relations": []}, "besides `distractor`"),
        ({"name": "synthetic", "relations": ["twice"]}, "Input should be"),
        ({"name": "gsm8k", "hub": "openai/gsm8k", "relations": ["times"]}, "synthetic datasets only"),
    ],
)
def test_bad_relations_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DatasetSpec.model_validate(fields)


def test_load_questions_generates_relation_problems_when_relations_are_set() -> None:
    spec = DatasetSpec(name="synthetic", n=30, complexity=(2, 5), seed=8, relations=["percent_more", "unit"])
    questions = load_questions(spec)
    assert questions == generate(30, complexity=(2, 5), seed=8, relations=["percent_more", "unit"])
    assert [q.id for q in questions[:2]] == ["relations-8-0", "relations-8-1"]
    assert all(q.wrong_readings for q in questions)


def test_a_sweep_with_relations_stores_them_and_its_jobs_load_them_back() -> None:
    sweep = {
        "name": "relations",
        "model": {"id": "Qwen/Qwen2.5-0.5B-Instruct"},
        "dataset": {"name": "synthetic", "n": 10},
        "eval": {"strategies": ["greedy"]},
    }
    (classic_job,) = expand(SweepSpec.model_validate(sweep))
    sweep["dataset"] = {"name": "synthetic", "n": 10, "relations": "all"}
    (job,) = expand(SweepSpec.model_validate(sweep))
    assert job.spec["dataset"]["relations"] == list(RELATION_NAMES)
    assert "relations" not in classic_job.spec["dataset"] and job.spec_hash != classic_job.spec_hash
    stored = job_spec_from_json(job.spec)
    assert stored.kind == "eval" and load_questions(stored.dataset)[0].id == "relations-0-0"


# ----------------------------------------------------------------------------- the preview command


def preview(*args: str) -> Result:
    """`orchestrator data preview synthetic ARGS`, with the sub-app mounted as orchestrator/cli.py mounts it."""
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    app.callback()(lambda: None)
    return CliRunner().invoke(app, ["data", "preview", "synthetic", *args])


def test_preview_prints_questions_solutions_answers_and_readings() -> None:
    result = preview("--complexity", "3", "-n", "5")
    assert result.exit_code == 0, result.output
    assert result.output.count("── relations-0-") == 5
    assert result.output.count("3 steps") == 5
    assert result.output.count("wrong readings:") == 5
    assert "#### " in result.output and "answer: " in result.output
    graph = preview("-n", "1", "-r", "unit", "--graph")
    assert "graph:\n  n0 = " in graph.output and "unconverted_unit: n" in graph.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--complexity", "13"], "--complexity: complexity must be"),
        (["--complexity", "x"], "--complexity: expected N or MIN-MAX"),
        (["-n", "0"], "-n: "),
        (["--relations", "times,bogus"], "--relations: Input should be"),
        (["--relations", "fraction", "-c", "12"], "--relations: relations [fraction] made no"),
    ],
)
def test_preview_refuses_bad_options_with_exit_2(args: list[str], message: str) -> None:
    result = preview(*args)
    assert result.exit_code == 2
    assert f"error: {message}" in result.output


def test_the_orchestrator_cli_mounts_the_preview_under_data() -> None:
    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["data", "preview", "synthetic", "--complexity", "2", "-n", "1"])
    assert result.exit_code == 0, result.output
    assert "── relations-0-0 · 2 steps" in result.output
