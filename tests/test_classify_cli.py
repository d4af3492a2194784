"""`orchestrator classify FILE.jsonl`: labels generations made anywhere; malformed lines named, bad files exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JANET = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends"
    " every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much"
    " in dollars does she make every day at the farmers' market?"
)
SOLUTION = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "classify", *args], cwd=REPO, env=env, input=stdin,
        capture_output=True, text=True, timeout=120,
    )


def jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_each_line_gets_a_label_and_malformed_lines_are_named(tmp_path: Path) -> None:
    # Given right and wrong generations, a harness sample, and lines that cannot be classified
    rows: list[object] = [
        {"question": JANET, "answer": SOLUTION, "output": "16 - 3 - 4 = 9. 9 * 2 = 18.\n#### 18"},
        {"question": JANET, "answer": "18", "output": "16 - 3 - 4 = 8 eggs. 8 * 2 = 16.\n#### 16"},
        "{not json",
        {"question": JANET, "answer": 18, "output": "16 - 3 = 13. 13 x 2 = 26.\n#### 26",
         "wrong_readings": {"dropped_step": 26}},
        "",
        {"question": JANET, "answer": "18"},
        {"question": JANET, "answer": "18", "output": "She makes twenty dollars."},
        {"doc": {"question": JANET, "answer": SOLUTION}, "target": "18", "resps": [["Janet sells her eggs. #### 2"]],
         "filtered_resps": ["2"]},
        {"question": JANET, "answer": "18", "output": "16 - 3 - 4 = 9 eggs, so", "truncated": True},
        ["a", "list"],
        {"question": JANET, "answer": "eighteen", "output": "#### 18"},
    ]
    # When it is classified
    done = cli(str(jsonl(tmp_path / "gens.jsonl", rows)))
    # Then every good line has one JSON object, in order, and each bad one is named by its number
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(p["line"], p["label"], p["exact"], p["extracted"]) for p in printed] == [
        (1, None, None, "18"),
        (2, "arithmetic", False, "16"),
        (4, "relationship", True, "26"),
        (7, "format", False, None),
        (8, "copied_number", False, "2"),
        (9, "truncated", False, "9"),
    ]
    assert printed[1]["evidence"] == "16 - 3 - 4 = 8 (is 9)"
    assert printed[2]["reading"] == "dropped_step"
    assert printed[0]["evidence"] is None
    errors = done.stderr.splitlines()
    assert errors[:4] == [
        "line 3: not JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 6: missing `output`",
        "line 10: a JSON list, not an object",
        "line 11: `answer` is neither a solution ending `#### <number>` nor a number",
    ]
    assert errors[4] == (
        "classified 6 line(s): 1 right, 5 wrong (format 1, truncated 1, arithmetic 1, copied_number 1,"
        " relationship 1); 4 malformed line(s) skipped"
    )


def test_stdin_and_model_text_that_looks_like_code(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    output = f"__import__('os').system('touch {marker}') = 1 + 1 = 3\n#### 3"
    done = cli("-", stdin=json.dumps({"question": "What is 1 + 1?", "answer": "2", "output": output}) + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] == "arithmetic"
    assert json.loads(done.stdout)["evidence"] == "1 + 1 = 3 (is 2)"
    assert not marker.exists()


def test_a_file_that_is_not_jsonl_is_one_clear_message_and_exit_2(tmp_path: Path) -> None:
    cases = {
        "table.csv": "question,answer,output\nWhat is 1 + 1?,2,3\n",
        "array.json": json.dumps([{"question": "q", "answer": "2", "output": "3"}]),
        "pretty.json": json.dumps({"question": "q", "answer": "2", "output": "3"}, indent=2),
        "empty.jsonl": "\n\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        done = cli(str(tmp_path / name))
        assert done.returncode == 2, (name, done.stderr)
        assert done.stdout == ""
        assert done.stderr.startswith(f"error: {tmp_path / name} is not JSONL"), done.stderr
        assert "expected one JSON object a line with `question`, `answer` and `output`" in done.stderr
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr

    (tmp_path / "binary.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    done = cli(str(tmp_path / "binary.jsonl"))
    assert (done.returncode, done.stderr.splitlines()) == (
        2, [f"error: {tmp_path / 'binary.jsonl'} is not JSONL: not UTF-8 text; expected one JSON object a line"
            " with `question`, `answer` and `output`"],
    )


def test_objects_without_the_fields_and_missing_files_exit_2(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "wrong_keys.jsonl", [{"prompt": "q", "completion": "3"}, {"prompt": "q2"}])
    done = cli(str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {path} has no line to classify (line 1: missing `question`, `answer`, `output`);"
        " expected one JSON object a line with `question`, `answer` and `output`"
    ]
    missing = cli(str(tmp_path / "nowhere.jsonl"))
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [f"error: {tmp_path / 'nowhere.jsonl'}: No such file or directory"]
