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
from jobs.data.shipped import Shipped, file_text
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


def load_examples(spec: TrainJobSpec, params: TrainParams, *, shipped: Shipped | None = None) -> list[TrainExample]:
    """The first `spec.traces` examples of the source, shuffled with `spec.seed`.

    Local files come from `shipped` when given (workers: the copy their sweep shipped; jobs.data.shipped).
    """
    if spec.method == "distill":
        pool = _distill_examples(params, shipped)
    else:
        pool = _source_examples(spec.source or DEFAULT_SOURCE, shipped)
    if spec.traces > len(pool):
        raise FatalJobError(f"train.traces: {spec.traces} requested but the source has only {len(pool)} examples")
    order = list(range(len(pool)))
    random.Random(spec.seed).shuffle(order)
    return [pool[i] for i in order[: spec.traces]]


def _source_examples(source: DatasetSpec, shipped: Shipped | None) -> list[TrainExample]:
    from jobs.data.datasets import load_questions

    return [
        TrainExample(id=q.id, question=q.question, response=CALCULATOR.sub("", q.solution).strip(), answer=q.answer)
        for q in load_questions(source, shipped=shipped, field="train.source")
    ]


def _distill_examples(params: TrainParams, shipped: Shipped | None) -> list[TrainExample]:
    if not params.trace_file:
        raise FatalJobError("train.trace_file: method distill needs a teacher-trace JSONL")
    text = file_text("train.trace_file", params.trace_file, params.trace_sha256, shipped)
    try:
        return parse_traces(text, stem=Path(params.trace_file).stem)
    except ValueError as error:
        raise FatalJobError(f"train.trace_file: {Path(params.trace_file).name}:{error}") from None


def parse_traces(text: str, *, stem: str) -> list[TrainExample]:
    """Teacher traces, one {question, response} object a line, every line checked; ValueError `<line>: why`."""
    examples = [_trace(stem, index, line) for index, line in enumerate(text.split("\n")) if line.strip()]
    if not examples:
        raise ValueError("1: no traces: the file has no JSON line")
    return examples


def _trace(stem: str, index: int, line: str) -> TrainExample:
    from jobs.scoring.answers import extract_answer

    try:
        row = json.loads(line)
        question, response = row["question"], row["response"]
        if not isinstance(question, str) or not isinstance(response, str):
            raise TypeError("`question` and `response` must be strings")
    except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as error:
        raise ValueError(f"{index + 1}: malformed trace ({error!r}); want {{question, response}}") from None
    answer = extract_answer(response)
    if not question.strip() or answer is None:
        raise ValueError(f"{index + 1}: want a question and a response that ends with '#### <number>'")
    return TrainExample(id=f"{stem}-{index}", question=question, response=response, answer=answer)


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
