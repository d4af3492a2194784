"""The fused LoRA projection (jobs.training.fused_lora) computes what peft computes, on a plain and an NF4 base.

bitsandbytes' NF4 ops run on CPU too, so the NF4 case here uses the same quantized weights
and dequantization op the CUDA path uses; only its speed needs the GPU (bench/train_throughput.py).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from jobs.training.fused_lora import dense_weight, fuse_lora


class Block(torch.nn.Module):
    def __init__(self, proj: torch.nn.Module) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def plain_base(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(48, 40, bias=True).to(dtype)


def nf4_base(dtype: torch.dtype) -> torch.nn.Module:
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    weight = torch.randn(40, 48, dtype=dtype) * 0.1
    layer = bnb.nn.Linear4bit(48, 40, bias=False, compute_dtype=dtype, quant_type="nf4", compress_statistics=True)
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    return layer.to("cpu")  # quantizes


def with_lora(base: torch.nn.Module, dropout: float) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    model = get_peft_model(Block(base), LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["proj"]))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would hide any error in A's gradient
            torch.nn.init.normal_(parameter, std=0.2)
    return model


def run(model: torch.nn.Module, x: torch.Tensor, seed: int = 3) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = model(x)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.detach(), grads, x.grad


@pytest.mark.parametrize("kind", ["plain", "nf4"])
def test_fused_projection_matches_peft_in_output_and_every_gradient(kind: str) -> None:
    dtype = torch.float32 if kind == "plain" else torch.bfloat16
    base = plain_base(dtype) if kind == "plain" else nf4_base(dtype)
    reference = with_lora(base, dropout=0.0)
    fused = copy.deepcopy(reference)
    assert fuse_lora(fused) == 1
    x = torch.randn(2, 5, 48, dtype=dtype)

    out_ref, grads_ref, dx_ref = run(reference, x)
    out, grads, dx = run(fused, x)

    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 2e-2}
    torch.testing.assert_close(out, out_ref, **tol)
    torch.testing.assert_close(dx, dx_ref, **tol)
    assert grads.keys() == grads_ref.keys() and len(grads) == 2  # lora_A and lora_B only: the base stays frozen
    for name in grads:
        assert grads[name].dtype == grads_ref[name].dtype == torch.float32  # fp32 adapters get fp32 gradients
        torch.testing.assert_close(grads[name], grads_ref[name], **tol)


def test_fused_dropout_is_the_lora_branch_only_and_matches_the_formula() -> None:
    """With dropout, the mask drawn (torch.native_dropout under a seed) is applied to the
    adapter's input only; the result equals the LoRA formula computed by hand with that mask."""
    model = with_lora(plain_base(torch.float32), dropout=0.5)
    fuse_lora(model)
    model.train()
    layer = model.base_model.model.proj
    a, b, scale = layer.lora_A["default"].weight, layer.lora_B["default"].weight, layer.scaling["default"]
    base = layer.get_base_layer()
    x = torch.randn(6, 48)

    out, grads, dx = run(model, x, seed=11)

    torch.manual_seed(11)
    dropped, _ = torch.native_dropout(x, 0.5, True)
    assert 0 < int((dropped == 0).sum()) < x.numel()  # the mask really dropped some inputs, not all
    xr = x.clone().requires_grad_(True)
    a_r, b_r = a.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    keep = (dropped != 0).float() * 2.0
    expected = base(xr) + scale * ((xr * keep) @ a_r.t()) @ b_r.t()
    (expected * torch.linspace(-1, 1, expected.shape[-1])).sum().backward()
    torch.testing.assert_close(out, expected.detach())
    torch.testing.assert_close(dx, xr.grad)
    torch.testing.assert_close(grads[next(n for n in grads if "lora_A" in n)], a_r.grad)
    torch.testing.assert_close(grads[next(n for n in grads if "lora_B" in n)], b_r.grad)

    model.eval()  # evaluation: no dropout, deterministic
    first, second = model(x), model(x)
    torch.testing.assert_close(first, second)


def test_nf4_dense_weight_is_bitsandbytes_dequantization() -> None:
    import bitsandbytes.functional as bnbf

    base = nf4_base(torch.bfloat16)
    expected = bnbf.dequantize_4bit(base.weight.data, base.weight.quant_state)
    torch.testing.assert_close(dense_weight(base, torch.bfloat16), expected, atol=0, rtol=0)


def test_layers_peft_must_handle_keep_their_own_forward() -> None:
    from peft import LoraConfig, get_peft_model

    two_adapters = with_lora(plain_base(torch.float32), dropout=0.0)
    two_adapters.add_adapter("second", LoraConfig(r=2, target_modules=["proj"]))
    assert fuse_lora(two_adapters) == 0
    dora = get_peft_model(Block(plain_base(torch.float32)), LoraConfig(r=2, use_dora=True, target_modules=["proj"]))
    assert fuse_lora(dora) == 0


def test_fused_adapter_saves_and_loads_as_plain_peft(tmp_path: Path) -> None:
    from peft import PeftModel

    model = with_lora(plain_base(torch.float32), dropout=0.0)
    fuse_lora(model)
    x = torch.randn(3, 48)
    expected = model(x).detach()
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(Block(plain_base(torch.float32)), tmp_path)  # peft's own, unfused forward
    torch.testing.assert_close(loaded(x), expected)


@pytest.mark.parametrize("kind", ["plain", "nf4"])
def test_fused_projection_traces_under_torch_compile_without_graph_breaks(kind: str) -> None:
    """`train.compile: true` compiles decoder layers holding fused projections: dynamo must trace
    the fused function whole (aot_eager: the tracing and autograd capture, without code generation)."""
    import torch._dynamo

    dtype = torch.float32 if kind == "plain" else torch.bfloat16
    model = with_lora(plain_base(dtype) if kind == "plain" else nf4_base(dtype), dropout=0.0)
    fuse_lora(model)
    x = torch.randn(2, 5, 48, dtype=dtype)
    assert torch._dynamo.explain(model)(x).graph_break_count == 0

    torch._dynamo.reset()
    eager_out, eager_grads, eager_dx = run(model, x)
    for parameter in model.parameters():
        parameter.grad = None
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out, grads, dx = run(compiled, x)
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(dx, eager_dx)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name.replace("_orig_mod.", "")])


def test_kept_adapter_casts_follow_every_write_to_the_weights() -> None:
    """bf16 activations, fp32 adapters: the bf16 casts are kept between calls (the second forward of a checkpointed
    step reuses them) but never outlive a write: one through torch (its version counter moves) or one announced by
    `adapters_changed()` (the training loop's, after an optimiser step whose kernel torch may not see)."""
    from jobs.training import fused_lora

    model = with_lora(plain_base(torch.bfloat16), dropout=0.0)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    fuse_lora(model)
    x = torch.randn(3, 48, dtype=torch.bfloat16)
    forward = model.base_model.model.proj.forward
    b = model.base_model.model.proj.lora_B["default"].weight

    def recast() -> torch.Tensor:  # the output with the casts made afresh
        forward.casts = None
        return model(x)

    first = model(x)
    kept = forward.casts
    assert kept is not None and kept[2].dtype == torch.bfloat16
    model(x)
    assert forward.casts is kept  # reused, not cast again
    with torch.no_grad():  # a write torch sees
        b.add_(0.5)
    after_write = model(x)
    assert not torch.allclose(after_write, first, atol=0.1)
    assert torch.equal(after_write, recast())
    b.data.mul_(-1.0)  # a write behind torch's back (.data has its own version counter), as an optimiser kernel's
    fused_lora.adapters_changed()
    after_step = model(x)
    assert not torch.allclose(after_step, after_write, atol=0.1)
    assert torch.equal(after_step, recast())
