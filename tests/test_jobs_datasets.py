"""Question loading (local JSONL, the datasets library, synthetic) and the synthetic generator."""

from __future__ import annotations

import ast
import json
import operator
import re
from pathlib import Path

import pytest

from jobs.data.datasets import load_jsonl, load_questions, questions_from_rows
from jobs.data.question import Question, count_calculations
from jobs.data.synthetic import generate
from jobs.specs import DatasetSpec
from tests.model_fixtures import require_gsm8k

CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def safe_eval(expr: str) -> float:
    """Arithmetic only (+ - * / and numbers): no names, calls or attributes."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            return BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"not plain arithmetic: {ast.dump(node)}")

    return walk(ast.parse(expr, mode="eval"))


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- GSM8K


def test_local_gsm8k_loads_in_order_with_ids_answers_and_complexity() -> None:
    path = require_gsm8k()
    questions = load_questions(DatasetSpec(name="gsm8k", path=str(path)))
    assert len(questions) == 1319
    first = questions[0]
    assert first.id == "test-0"
    assert first.question.startswith("Janet")
    assert first.answer == "18"
    assert first.solution.endswith("#### 18")
    assert first.complexity == 2  # 16-3-4 and 9*2
    assert len({q.id for q in questions}) == len(questions)
    assert all(q.complexity == max(1, q.solution.count("<<")) for q in questions)
    assert max(q.complexity for q in questions) >= 5


def test_limit_takes_the_first_n_in_file_order() -> None:
    path = require_gsm8k()
    everything = load_questions(DatasetSpec(name="gsm8k", path=str(path)))
    first_five = load_questions(DatasetSpec(name="gsm8k", path=str(path), limit=5))
    assert first_five == everything[:5]
    assert [q.id for q in first_five] == [f"test-{i}" for i in range(5)]


def test_complexity_is_at_least_one_without_annotations() -> None:
    assert count_calculations("She has 3 apples.\n#### 3") == 1
    assert count_calculations("2+2 = <<2+2=4>>4 and 4*2 = <<4*2=8>>8\n#### 8") == 2


def test_ids_use_file_stem_and_line_index(tmp_path: Path) -> None:
    row = {"question": "q?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}
    path = write_jsonl(tmp_path / "mini.jsonl", [row, "", row])
    questions = load_jsonl(path)
    assert [q.id for q in questions] == ["mini-0", "mini-2"]  # a blank line keeps its index
    assert questions[0] == Question("mini-0", "q?", "2", row["answer"], 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "malformed GSM8K line"),
        (json.dumps({"question": "q?"}), "missing field 'answer'"),
        (json.dumps({"answer": "#### 2"}), "missing field 'question'"),
        (json.dumps({"question": "q?", "answer": "no marker"}), "####"),
        (json.dumps(["a", "list"]), "JSON object"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    good = {"question": "q?", "answer": "#### 2"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, line])
    with pytest.raises(ValueError) as error:
        load_jsonl(path)
    assert f"{path}:2:" in str(error.value)
    assert message in str(error.value)


def test_datasets_library_rows_convert_like_the_hub_path(tmp_path: Path) -> None:
    # The hub path is `datasets.load_dataset(hub, config, split=...)` followed by this
    # conversion; loading a local JSON file through the same library exercises it offline.
    import datasets

    path = require_gsm8k()
    subset = write_jsonl(tmp_path / "test.jsonl", path.read_text(encoding="utf-8").splitlines()[:20])
    rows = datasets.load_dataset("json", data_files=str(subset), split="train", cache_dir=str(tmp_path / "cache"))
    assert questions_from_rows(rows, prefix="test") == load_jsonl(subset)


def test_datasets_library_malformed_row_is_named() -> None:
    with pytest.raises(ValueError, match="test row 1"):
        questions_from_rows([{"question": "q", "answer": "#### 1"}, {"question": "q"}], prefix="test")


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_same_seed_same_problems_other_seed_other_problems() -> None:
    assert generate(30, complexity=(1, 5), seed=7) == generate(30, complexity=(1, 5), seed=7)
    assert generate(30, complexity=(1, 5), seed=7) != generate(30, complexity=(1, 5), seed=8)
    spec = DatasetSpec(name="synthetic", n=10, complexity=(2, 3), seed=3)
    assert load_questions(spec) == generate(10, complexity=(2, 3), seed=3)


def test_synthetic_arithmetic_is_correct_and_answer_is_the_last_value() -> None:
    for question in generate(300, complexity=(1, 8), seed=11):
        calcs = CALC.findall(question.solution)
        assert len(calcs) == question.complexity
        for expr, value in calcs:
            assert safe_eval(expr) == float(value), f"{question.id}: {expr}={value}"
            assert float(value) >= 0 and float(value).is_integer()
        assert question.answer == calcs[-1][1]
        assert question.solution.endswith(f"#### {question.answer}")
        # A solution line per step shows the value it computes, as GSM8K does.
        lines = question.solution.splitlines()
        assert len(lines) == question.complexity + 1
        assert all(f">>{value}" in line for line, (_, value) in zip(lines, calcs))


def test_synthetic_complexity_range_is_respected_and_covered() -> None:
    questions = generate(200, complexity=(2, 5), seed=0)
    assert {q.complexity for q in questions} == {2, 3, 4, 5}
    assert all(count_calculations(q.solution) == q.complexity for q in questions)
    assert {q.complexity for q in generate(20, complexity=(3, 3), seed=0)} == {3}


def test_synthetic_problems_are_varied_word_problems() -> None:
    questions = generate(100, complexity=(1, 4), seed=5)
    openings = {q.question.split(".")[0].split()[-1] for q in questions}
    assert len(openings) >= 4  # several themes, not one template
    assert len({q.question for q in questions}) == len(questions)
    assert all(q.question.rstrip().endswith("?") for q in questions)
    assert len({q.id for q in questions}) == len(questions)


def test_synthetic_refuses_bad_ranges() -> None:
    with pytest.raises(ValueError):
        generate(3, complexity=(0, 2), seed=0)
    with pytest.raises(ValueError):
        generate(3, complexity=(3, 2), seed=0)
