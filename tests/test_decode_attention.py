"""The refill engine's live-length decode attention (jobs.generation.decode_attention), on the CPU.

CI has no GPU, so the Triton kernel runs under Triton's interpreter (TRITON_INTERPRET=1, set in a
subprocess before triton is imported: the interpreter is chosen when a kernel is defined). It
computes the same function as plain attention over each row's first `lengths[row]` keys, and the
refill engine with it generates token for token what the batched engine generates. On CUDA the
same kernel is compiled; bench/decode_attention_check.py checks it there against this reference
and times it against masked SDPA (device run under bench/results/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from jobs.generation import decode_attention

REPO = Path(__file__).resolve().parents[1]

needs_triton = pytest.mark.skipif(
    decode_attention.triton is None and os.environ.get("CI") != "true",
    reason="triton is not installed (pip install -e '.[dev]' brings it; its interpreter runs the kernel on the CPU)",
)


def interpreted(code: str) -> dict:  # type: ignore[type-arg]
    """Run `code` (which prints one JSON line last) in a Python with Triton's interpreter on."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


@needs_triton
def test_kernel_matches_attention_over_each_rows_live_keys() -> None:
    """Grouped-query shapes of Qwen2.5 (7 query heads a key/value head), Qwen3 (4), plain multi-head, a head
    size that is no power of two; lengths of 1, of the whole capacity and between; several key splits."""
    result = interpreted("""
        import json, torch
        from jobs.generation.decode_attention import decode_attention, decode_attention_reference
        errors, written = [], []
        for case, (rows, heads, kv_heads, capacity, dim, splits) in enumerate(
                [(3, 14, 2, 150, 64, 3), (2, 8, 8, 70, 32, None), (4, 32, 8, 200, 80, 4), (2, 4, 2, 64, 16, 1)]):
            generator = torch.Generator().manual_seed(case)
            q = torch.randn(rows, heads, 1, dim, generator=generator)
            k = torch.randn(rows, kv_heads, capacity, dim, generator=generator)
            v = torch.randn(rows, kv_heads, capacity, dim, generator=generator)
            lengths = torch.randint(1, capacity + 1, (rows,), generator=generator)
            lengths[0], lengths[-1] = 1, capacity
            k_poisoned, v_poisoned = k.clone(), v.clone()  # what lies past a row's length must not matter
            for row, length in enumerate(lengths.tolist()):
                k_poisoned[row, :, length:], v_poisoned[row, :, length:] = float("nan"), 1e6
            out = decode_attention(q, k_poisoned, v_poisoned, lengths, dim ** -0.5, splits=splits)
            ref = decode_attention_reference(q, k, v, lengths, dim ** -0.5)
            errors.append(float((out - ref).norm() / ref.norm()))
            written.append(bool(torch.isfinite(out).all()))
        print(json.dumps({"errors": errors, "finite": written}))
    """)
    assert all(result["finite"])
    assert max(result["errors"]) < 1e-5, result["errors"]


def test_reference_is_softmax_attention_over_the_live_prefix() -> None:
    """The reference itself, against SDPA on each row's prefix (one row at a time, no mask)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 16), torch.randn(3, 2, 40, 16), torch.randn(3, 2, 40, 16)
    lengths = torch.tensor([1, 17, 40])
    out = decode_attention.decode_attention_reference(q, k, v, lengths, 0.25)
    for row, length in enumerate(lengths.tolist()):
        keys = k[row, :, :length].repeat_interleave(3, dim=0)
        values = v[row, :, :length].repeat_interleave(3, dim=0)
        expected = torch.nn.functional.scaled_dot_product_attention(q[row], keys, values, scale=0.25)
        torch.testing.assert_close(out[row, 0], expected[:, 0], rtol=1e-5, atol=1e-5)


@needs_triton
def test_refill_with_the_live_kernel_generates_what_the_batched_engine_generates(tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Greedy, through slot reuse (2 slots for 5 prompts, the probe ending early): the live kernel and masked
    SDPA give the batched engine's tokens; the stats say which kernel ran."""
    result = interpreted(f"""
        import json
        from jobs.data.synthetic import generate
        from jobs.generation.engine import generate_samples
        from jobs.generation.refill import generate_samples_refill
        from jobs.models.loading import load_model
        from jobs.specs import ModelSpec
        from tests.model_fixtures import PROBE
        loaded = load_model(ModelSpec(id={str(tiny_model.path)!r}), device="cpu")
        convs = [PROBE] + [[{{"role": "user", "content": q.question}}] for q in generate(4, complexity=(1, 3), seed=2)]
        batched = generate_samples(loaded, convs, max_new_tokens=10, batch_size=16, seed=0)
        runs = {{}}
        for kernel in ("live", "sdpa", "auto"):
            stats = {{}}
            rows = generate_samples_refill(loaded, convs, max_new_tokens=10, slots=2, seed=0, decode_attention=kernel,
                                           stats=stats)
            runs[kernel] = {{"ids": [[list(g.token_ids) for g in r] for r in rows], "live": stats["live_attention"]}}
        print(json.dumps({{"batched": [[list(g.token_ids) for g in r] for r in batched], "runs": runs}}))
    """)
    assert result["runs"]["live"]["ids"] == result["batched"]
    assert result["runs"]["sdpa"]["ids"] == result["batched"]
    assert [result["runs"][k]["live"] for k in ("live", "sdpa", "auto")] == [1.0, 0.0, 1.0]  # interpreter: auto is live
    assert any(len(ids) < 10 for rows in result["batched"] for ids in rows)  # a row ended early: its slot was reused


def test_auto_keeps_masked_sdpa_on_a_cpu_without_the_interpreter(tiny_model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from jobs.generation.slot_cache import decode_kernel
    from jobs.models.loading import load_model
    from jobs.specs import ModelSpec

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    model = load_model(ModelSpec(id=str(tiny_model.path)), device="cpu").model
    assert decode_kernel(model, "auto") == "sdpa"
    with pytest.raises(ValueError, match="needs Triton on CUDA"):
        decode_kernel(model, "live")


def test_fused_norms_compute_transformers_rmsnorm_and_are_restored() -> None:
    """jobs.generation.fused_decode: the same values as transformers' RMSNorm (float32 and bf16 inputs), swapped in
    only inside the block."""
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    from jobs.generation.fused_decode import FusedDecodeOps

    norm = Qwen3RMSNorm(64, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    holder = torch.nn.Sequential(norm)
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.bfloat16, 1e-2)):
        x = torch.randn(5, 3, 64, dtype=dtype) * 3
        expected = norm.to(dtype)(x)
        ops = FusedDecodeOps(holder)
        with ops.active():
            fused = norm(x)
        swapped = len(ops.norms)
        assert swapped == 1
        assert "forward" not in vars(norm)  # the class's own forward again
        torch.testing.assert_close(fused, expected, rtol=tolerance, atol=tolerance)


@needs_triton
def test_fused_rotary_matches_transformers_and_is_restored() -> None:
    """The rotary kernel against transformers' apply_rotary_pos_emb (Qwen3's, GQA heads, positions per row, one
    token and a prompt of 5, query laid out as transformers' view + transpose leaves it)."""
    result = interpreted("""
        import json, torch
        from transformers import Qwen3Config
        from transformers.models.qwen3 import modeling_qwen3 as qwen3
        from jobs.generation.fused_decode import FusedDecodeOps
        config = Qwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                             num_hidden_layers=1, intermediate_size=32, vocab_size=50)
        model = qwen3.Qwen3ForCausalLM(config)
        original = qwen3.apply_rotary_pos_emb
        rope = model.model.rotary_emb
        errors = []
        for rows, seq in ((3, 1), (2, 5)):
            hidden = torch.randn(rows, seq, 64)
            q = torch.randn(rows, seq, 4, 16).transpose(1, 2)
            k = torch.randn(rows, seq, 2, 16).transpose(1, 2)
            positions = torch.randint(0, 300, (rows, seq))
            cos, sin = rope(hidden, positions)
            expected = original(q, k, cos, sin)
            ops = FusedDecodeOps(model)
            with ops.active():
                fused = qwen3.apply_rotary_pos_emb(q, k, cos, sin)
            patched = len(ops.rotary)
            errors.append(max(float((f - e).abs().max()) for f, e in zip(fused, expected)))
        print(json.dumps({"errors": errors, "patched": patched, "restored": qwen3.apply_rotary_pos_emb is original}))
    """)
    assert result["patched"] == 1 and result["restored"]
    assert max(result["errors"]) < 1e-5, result["errors"]


@needs_triton
def test_triton_kernels_are_chosen_only_on_cards_triton_runs_on(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The kernels (attention, norms and rotary, the temperature draw) need CUDA from Ampere on: a GTX 10-series
    card (6.1) or a Turing one (7.5) keeps the torch paths. CI has no GPU, so the device's compute capability is
    stood in for here (the one mock: no card to ask)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    capability = {"value": (6, 1)}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability["value"])
    assert not decode_attention.available("cpu")
    for value, expected in (((6, 1), False), ((7, 5), False), ((8, 0), True), ((8, 9), True), ((9, 0), True)):
        capability["value"] = value
        assert decode_attention.available(torch.device("cuda")) is expected, value
