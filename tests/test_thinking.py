"""Reasoning models' thinking mode: the template switch, thinking and answer split on the model's own
delimiters, tokens counted apart, a thinking block cut by the cap labelled `truncated`, and budget forcing on
`</think>`. The model is a tiny random Qwen3 rigged to think (tests.thinking_fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.data.question import Question
from jobs.errors import FatalJobError
from jobs.eval import count_thinking, label_failures
from jobs.generation.engine import generate_batch
from jobs.generation.rows import encode_prompt
from jobs.models.loading import LoadedModel, load_model
from jobs.scoring.answers import extract_answer
from jobs.scoring.thinking import split_thinking
from jobs.specs import BudgetForcingParams, ModelSpec
from jobs.strategies import budget_forcing, greedy
from tests.model_fixtures import TinyModel
from tests.thinking_fixtures import ThinkingModel, build_thinking_model

EMPTY_BLOCK = "<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def thinker(tmp_path_factory: pytest.TempPathFactory) -> ThinkingModel:
    return build_thinking_model(tmp_path_factory.mktemp("tiny-qwen3"), close_at=3, eos_at=9)


def load(model: ThinkingModel | TinyModel, thinking: str) -> LoadedModel:
    return load_model(ModelSpec(id=str(model.path), thinking=thinking), device="cpu", use_cache=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "thinking", "answer", "closed"),
    [
        ("<think>5+3=8</think>#### 9", "5+3=8", "#### 9", True),
        ("<think>5+3=8 so far", "5+3=8 so far", "", False),  # cut inside the block: no answer part
        ("The answer is 4", None, "The answer is 4", True),  # no block: all answer
        ("so 8</think> 12", "so 8", " 12", True),  # the prompt opened the block
    ],
)
def test_split_on_the_delimiters(text: str, thinking: str | None, answer: str, closed: bool) -> None:
    parts = split_thinking(text)
    assert (parts.thinking, parts.answer, parts.closed) == (thinking, answer, closed)


def test_an_answer_is_never_read_from_the_thinking() -> None:
    assert extract_answer("<think>#### 7, or maybe 8</think>So the answer is 12.") == "12"
    assert extract_answer("<think>half of 16 is #### 8") is None  # never closed: no answer at all
    assert extract_answer("no thinking here: #### 5") == "5"


def test_the_switch_is_written_into_the_prompt(thinker: ThinkingModel) -> None:
    prompts = {mode: load(thinker, mode) for mode in ("auto", "on", "off")}
    rendered = {mode: loaded.tokenizer.decode(encode_prompt(loaded.tokenizer, thinker.probe))
                for mode, loaded in prompts.items()}
    assert rendered["off"].endswith(EMPTY_BLOCK)
    assert not rendered["on"].endswith(EMPTY_BLOCK) and rendered["on"] == rendered["auto"]  # Qwen3 thinks by default
    assert prompts["on"].info["thinking"] == {"mode": "on", "template_switch": True}
    assert prompts["on"].think_ids is not None


def test_on_for_a_template_without_the_switch_is_an_error(tiny_model: TinyModel) -> None:
    with pytest.raises(FatalJobError, match=r"model\.thinking: on.*no thinking switch"):
        load(tiny_model, "on")
    loaded = load(tiny_model, "off")
    assert any("model.thinking: off" in w for w in loaded.info["warnings"])


def probe_question(thinker: ThinkingModel) -> Question:
    return Question(id="probe", question=thinker.probe[0]["content"], answer="13", solution="16-3=13\n#### 13",
                    complexity=1)


def test_thinking_and_answer_tokens_are_counted_apart(thinker: ThinkingModel) -> None:
    loaded = load(thinker, "on")
    for engine in ("refill", "batched"):
        generation = generate_batch(loaded, [thinker.probe], max_new_tokens=32, batch_size=1, seed=0, engine=engine)[0]
        record = count_thinking([greedy.score(probe_question(thinker), generation)])[0]
        assert generation.output_tokens == thinker.eos_at + 1
        assert record.details["thinking_tokens"] == thinker.close_at + 1  # up to and including </think>
        assert record.details["answer_tokens"] == thinker.eos_at - thinker.close_at
        assert record.extracted_answer == extract_answer(split_thinking(generation.text).answer)


def test_a_thinking_block_cut_by_the_cap_is_truncated(thinker: ThinkingModel) -> None:
    loaded = load(thinker, "on")
    generation = generate_batch(loaded, [thinker.probe], max_new_tokens=thinker.close_at, batch_size=1, seed=0,
                                engine="refill")[0]
    question = probe_question(thinker)
    record = label_failures(count_thinking([greedy.score(question, generation)]), [question])[0]
    assert generation.truncated and not split_thinking(generation.text).closed
    assert record.extracted_answer is None and not record.correct
    assert record.details["thinking_tokens"] == record.output_tokens and record.details["answer_tokens"] == 0
    assert record.failure is not None and record.failure.label == "truncated"


def test_budget_forcing_uses_the_models_own_delimiter(thinker: ThinkingModel, tiny_model: TinyModel) -> None:
    params = BudgetForcingParams(max_think_tokens=12, waits=1, max_answer_tokens=4)
    loaded = load(thinker, "on")
    opening, closing = loaded.think_ids or (None, None)
    forced = budget_forcing.force(loaded, encode_prompt(loaded.tokenizer, thinker.probe), params, "\n####")
    # The model closes at token close_at: that `</think>` is replaced by the wait string.
    assert forced.waits_used == 1 and forced.wait_positions == [thinker.close_at]
    assert forced.thinking[0] == opening and closing not in forced.thinking
    assert forced.answer_prefix[0] == closing  # at the end: `</think>` and the answer prefix
    # Thinking switched off, or a model without the delimiter: the prompt-based form.
    for other in (load(thinker, "off"), load(tiny_model, "auto")):
        plain = budget_forcing.force(other, encode_prompt(other.tokenizer, thinker.probe), params, "\n####")
        assert closing not in plain.answer_prefix


def test_thinking_is_part_of_the_run_label() -> None:
    assert ModelSpec(id="Qwen/Qwen3-4B", thinking="off").label == "Qwen3-4B·think-off"
    assert ModelSpec(id="Qwen/Qwen3-4B").label == "Qwen3-4B"
    assert "thinking" not in ModelSpec(id="x").model_dump()  # the default leaves old hashes alone


def test_unknown_thinking_value_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="thinking"):
        ModelSpec(id="x", thinking="maybe")  # type: ignore[arg-type]
