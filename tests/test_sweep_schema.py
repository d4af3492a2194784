"""The sweep file: what validates, and every bad input refused with the field named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobs.errors import SweepError
from orchestrator.sweep import load_sweep

GOOD = """
name: tinyreason-0.5b
seed: 42
model: {id: Qwen/Qwen2.5-0.5B-Instruct}
dataset: {name: synthetic, n: 30, complexity: [1, 4]}
train:
  method: qlora
  lora_rank: [8, 16, 32]
  traces: [500, 2000]
eval:
  strategies: [greedy]
  max_new_tokens: 512
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_sweep_validates_with_defaults(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, GOOD))
    assert sweep.name == "tinyreason-0.5b" and sweep.seed == 42
    assert sweep.train is not None and sweep.train.lora_rank == [8, 16, 32]
    assert [s.name for s in sweep.eval.strategies] == ["greedy"]
    assert sweep.resources.max_attempts == 3


def test_dataset_path_resolves_against_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "q.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write(tmp_path, GOOD.replace("{name: synthetic, n: 30, complexity: [1, 4]}", "{name: gsm8k, path: data/q.jsonl}")))
    assert sweep.dataset.path == str(tmp_path / "data" / "q.jsonl")


def test_all_six_strategy_names_are_accepted_by_the_schema(tmp_path: Path) -> None:
    text = GOOD.replace(
        "strategies: [greedy]",
        "strategies: [greedy, {self_consistency: {n: 5, temperature: 0.7}}, reflection, sc_reflect, structured_sc,"
        " {budget_forcing: {max_think_tokens: 1000, waits: 2}}]",
    )
    sweep = load_sweep(write(tmp_path, text))
    assert [s.name for s in sweep.eval.strategies] == [
        "greedy", "self_consistency", "reflection", "sc_reflect", "structured_sc", "budget_forcing"
    ]


def test_prompt_overrides_are_validated_and_carried_into_eval_specs(tmp_path: Path) -> None:
    from orchestrator.expand import expand

    plain = load_sweep(write(tmp_path, GOOD))
    text = GOOD.replace("strategies: [greedy]", "strategies: [greedy]\n  prompts: {zero_shot: {system: ''}}")
    sweep = load_sweep(write(tmp_path, text))
    evals = [d for d in expand(sweep) if d.kind == "eval"]
    assert evals and all(d.spec["prompts"] == {"zero_shot": {"system": ""}} for d in evals)
    # Without overrides the spec has no `prompts` key: hashes of earlier sweeps do not move.
    assert all("prompts" not in d.spec for d in expand(plain) if d.kind == "eval")
    bad = GOOD.replace("strategies: [greedy]", "strategies: [greedy]\n  prompts: {zero_shot: {sytem: x}}")
    with pytest.raises(SweepError, match=r"eval.prompts: .*unknown fields \['sytem'\]"):
        load_sweep(write(tmp_path, bad))


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (("seed: 42", "seed: 42\ncolour: blue"), "colour", "unknown key"),
        (("seed: 42", "seed: forty-two"), "seed", "integer"),
        (("lora_rank: [8, 16, 32]", "lora_rank: []"), "train.lora_rank", "grid is empty"),
        (("lora_rank: [8, 16, 32]", "lora_rank: [8, -16]"), "train.lora_rank", "> 0"),
        (("traces: [500, 2000]", "traces: 0"), "train.traces", "> 0"),
        (("strategies: [greedy]", "strategies: [beam_search]"), "eval.strategies.0", "unknown strategy 'beam_search'"),
        (("strategies: [greedy]", "strategies: []"), "eval.strategies", "grid is empty"),
        (("strategies: [greedy]", "strategies: [{self_consistency: {n: 0}}]"), "eval.strategies.0.n", "greater than or equal to 1"),
        (("strategies: [greedy]", "strategies: [{self_consistency: {temperature: -1}}]"), "eval.strategies.0.temperature", "greater than or equal to 0"),
        (("strategies: [greedy]", "strategies: [{self_consistency: {votes: 3}}]"), "eval.strategies.0.votes", "unknown key"),
        (("strategies: [greedy]", "strategies: [{budget_forcing: {max_think_tokens: 0}}]"), "eval.strategies.0.max_think_tokens", "greater than 0"),
        (("strategies: [greedy]", "strategies: [greedy, greedy]"), "eval.strategies", "duplicate strategy"),
        (("max_new_tokens: 512", "max_new_tokens: -5"), "eval.max_new_tokens", "greater than 0"),
        (("max_new_tokens: 512", "max_new_tokens: 512\n  engine: paged"), "eval.engine", "'batched' or 'refill'"),
        (("model: {id: Qwen/Qwen2.5-0.5B-Instruct}", "model: {}"), "model", "exactly one of"),
        (("{name: synthetic, n: 30, complexity: [1, 4]}", "{name: gsm8k}"), "dataset", "exactly one of dataset.path"),
        (("{name: synthetic, n: 30, complexity: [1, 4]}", "{name: gsm8k, path: /nonexistent/test.jsonl}"), "dataset.path", "file not found"),
        (("{name: synthetic, n: 30, complexity: [1, 4]}", "{name: mmlu}"), "dataset.name", "gsm8k"),
        (("{name: synthetic, n: 30, complexity: [1, 4]}", "{name: synthetic, complexity: [4, 1]}"), "dataset", "complexity"),
        (("name: tinyreason-0.5b", "name: 'has spaces'"), "name", "pattern"),
        (("model: {id: Qwen/Qwen2.5-0.5B-Instruct}", "model: {package: no_such_package_xyz}"), "model.package", "not installed"),
    ],
)
def test_bad_sweeps_name_the_field(tmp_path: Path, change: tuple[str, str], field: str, words: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(SweepError) as caught:
        load_sweep(write(tmp_path, GOOD.replace(old, new, 1)))
    message = str(caught.value)
    assert f"{field}:" in message, message
    assert words in message, message


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="not valid YAML"):
        load_sweep(write(tmp_path, "name: [unclosed"))
    with pytest.raises(SweepError, match="must be a mapping"):
        load_sweep(write(tmp_path, "- just\n- a list\n"))
    with pytest.raises(SweepError, match="sweep file not found"):
        load_sweep(tmp_path / "missing.yaml")
