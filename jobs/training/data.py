"""Training examples: which traces a train job learns from, and their token ids and label mask.

Sources: GSM8K (local JSONL or hub: human-written solutions) or the synthetic generator,
shuffled with the job's seed and cut to `traces`; or, for `method: distill`, a
teacher-trace JSONL with one object per line:

    {"question": "Tom has 3 apples ...", "response": "He has 3 + 2 = 5 apples.\\n#### 5"}

`response` is the teacher's full answer and should end with a `#### <number>` line, the
format jobs.scoring.answers extracts. Either way each example becomes the eval prompt's chat
(jobs.data.prompts.build_messages) plus an assistant turn, and only the assistant turn's
tokens carry a loss (completion-only).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.data.prompts import build_messages
from jobs.errors import FatalJobError
from jobs.specs import DatasetSpec, TrainJobSpec, TrainParams

IGNORE_INDEX = -100
# GSM8K's calculator annotations (<<48/2=24>>) are not something a model should learn to write.
CALCULATOR = re.compile(r"<<[^<>]*>>")
DEFAULT_SOURCE = DatasetSpec(name="synthetic", n=10_000, complexity=(1, 6))


@dataclass(frozen=True)
class TrainExample:
    id: str
    question: str
    response: str  # the assistant turn, ending with `#### <answer>`
    answer: str  # normalised final answer, for the audit's pass@1


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on the prompt, the token id on the assistant's tokens


def load_examples(spec: TrainJobSpec, params: TrainParams) -> list[TrainExample]:
    """The first `spec.traces` examples of the source, shuffled with `spec.seed`."""
    pool = _distill_examples(params) if spec.method == "distill" else _source_examples(spec.source or DEFAULT_SOURCE)
    if spec.traces > len(pool):
        raise FatalJobError(f"train.traces: {spec.traces} requested but the source has only {len(pool)} examples")
    order = list(range(len(pool)))
    random.Random(spec.seed).shuffle(order)
    return [pool[i] for i in order[: spec.traces]]


def _source_examples(source: DatasetSpec) -> list[TrainExample]:
    from jobs.data.datasets import load_questions

    return [
        TrainExample(id=q.id, question=q.question, response=CALCULATOR.sub("", q.solution).strip(), answer=q.answer)
        for q in load_questions(source)
    ]


def _distill_examples(params: TrainParams) -> list[TrainExample]:
    if not params.trace_file:
        raise FatalJobError("train.trace_file: method distill needs a teacher-trace JSONL")
    path = Path(params.trace_file)
    if not path.is_file():
        raise FatalJobError(f"train.trace_file: file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_trace(path, index, line) for index, line in enumerate(lines) if line.strip()]


def _trace(path: Path, index: int, line: str) -> TrainExample:
    from jobs.scoring.answers import extract_answer

    try:
        row = json.loads(line)
        question, response = row["question"], row["response"]
        if not isinstance(question, str) or not isinstance(response, str):
            raise TypeError("`question` and `response` must be strings")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise FatalJobError(
            f"train.trace_file: {path}:{index + 1}: malformed trace ({error!r}); want {{question, response}}"
        ) from None
    answer = extract_answer(response)
    return TrainExample(id=f"{path.stem}-{index}", question=question, response=response, answer=str(answer or ""))


def count_examples(source: DatasetSpec | None, trace_file: str | None, method: str) -> int | None:
    """How many examples a source holds, when knowable without loading it (None: not knowable)."""
    if method == "distill":
        path = Path(trace_file) if trace_file else None
        return _count_lines(path) if path and path.is_file() else None
    source = source or DEFAULT_SOURCE
    if source.name == "synthetic":
        return source.n
    if source.path and Path(source.path).is_file():
        count = _count_lines(Path(source.path))
        return min(count, source.limit) if source.limit else count
    return None


def _count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip())


def tokenize(example: TrainExample, tokenizer: Any, *, max_length: int) -> Tokenized:
    """Chat-formatted ids with the prompt masked out of the labels.

    The prompt (with the generation prompt the eval also uses) and the rest of the chat
    text are tokenized separately, so the boundary between masked and learned tokens is
    exact whatever the tokenizer merges.
    """
    messages = build_messages(example.question)
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": example.response}], tokenize=False
    )
    if not full.startswith(prompt):
        raise FatalJobError("model: its chat template does not extend the generation prompt with the assistant turn")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return Tokenized(input_ids=ids, labels=labels)
