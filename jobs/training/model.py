"""The model a train job trains: base weights (NF4 on CUDA, else plain) with peft LoRA on top."""

from __future__ import annotations

from typing import Any

import torch

from jobs.errors import FatalJobError
from jobs.models.loading import load_tokenizer, resolve_dtype, resolve_source
from jobs.specs import TrainJobSpec, TrainParams
from jobs.training.fused_lora import fuse_lora

# Attention and MLP projections across the common decoder families (Llama/Qwen/Mistral,
# GPT-2, GPT-NeoX, Phi, Baichuan); the default targets are those the model has.
PROJECTIONS = frozenset({
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "qkv_proj", "gate_up_proj", "c_attn", "c_proj", "c_fc", "query_key_value",
    "dense", "dense_h_to_4h", "dense_4h_to_h", "fc1", "fc2", "out_proj", "W_pack", "Wqkv",
})

MODES = {"qlora-nf4-cuda": "cuda", "lora-cuda": "cuda", "lora-cpu": "cpu"}


def choose_mode(spec: TrainJobSpec, params: TrainParams, *, cuda: bool) -> str:
    """Which training ran: NF4 QLoRA on CUDA, or plain LoRA in the model's dtype.

    `method: lora` never quantizes; qlora and distill quantize when `quantization: nf4`.
    """
    quantize = params.quantization == "nf4" and spec.method != "lora"
    if cuda:
        return "qlora-nf4-cuda" if quantize else "lora-cuda"
    if quantize and not params.allow_cpu_fallback:
        raise FatalJobError(
            "train.allow_cpu_fallback: false, and quantization nf4 needs CUDA, which this worker lacks"
        )
    return "lora-cpu"


def load_base(spec: TrainJobSpec, mode: str) -> tuple[Any, Any]:
    """(frozen base model on the mode's device, tokenizer)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers
    source, gguf_file = resolve_source(spec.model)
    options: dict[str, Any] = {"revision": spec.model.revision, "trust_remote_code": spec.model.trust_remote_code}
    if gguf_file:
        options["gguf_file"] = gguf_file
    tokenizer = load_tokenizer(source, options)
    device = MODES[mode]
    # Any, as load_base returns it: transformers types PreTrainedModel.to (functools.wraps) and
    # gradient_checkpointing_enable poorly, and peft wraps the model next.
    model: Any
    if mode == "qlora-nf4-cuda":
        model = AutoModelForCausalLM.from_pretrained(
            source, quantization_config=nf4_config(), dtype=torch.bfloat16, device_map={"": 0}, **options
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(spec.model, device), **options)
        model = model.to(device)
    model.requires_grad_(False)
    model.config.use_cache = False
    if device == "cuda":
        # Non-reentrant checkpointing needs no input-grad hack and works with frozen embeddings.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer


def nf4_config() -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]  # untyped in transformers
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def linear_names(model: Any) -> set[str]:
    """Leaf names of the model's linear layers (bitsandbytes' Linear4bit included), lm_head excluded."""
    output = model.get_output_embeddings()
    return {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }


def resolve_targets(model: Any, requested: list[str] | None) -> list[str]:
    present = linear_names(model)
    if requested is None:
        targets = sorted(present & PROJECTIONS)
        if not targets:
            raise FatalJobError(
                f"train.target_modules: no known projection in the model; name some of {sorted(present)}"
            )
        return targets
    missing = sorted(set(requested) - present)
    if missing:
        raise FatalJobError(f"train.target_modules: {missing} not in the model (its linear layers: {sorted(present)})")
    return list(requested)


def add_lora(model: Any, spec: TrainJobSpec, params: TrainParams) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=spec.lora_rank,
        # peft annotates int, but scales by alpha / r, so a fractional alpha (`1.5x`) works as given.
        lora_alpha=params.alpha(spec.lora_rank),  # type: ignore[arg-type]  # mistyped in peft
        lora_dropout=params.lora_dropout,
        target_modules=resolve_targets(model, params.target_modules),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(spec.seed)  # LoRA A is randomly initialised: same seed, same start
    model = get_peft_model(model, config)
    if params.adapter_dtype == "bfloat16" and next(model.parameters()).is_cuda:
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
    if params.fused_lora:
        fuse_lora(model)
    if params.compile and next(model.parameters()).is_cuda:
        compile_layers(model)
    return model


def compile_layers(model: Any) -> None:
    """torch.compile every decoder layer: a small model's step is bound by kernel launches
    (~10 per adapter per pass), which compiling fuses."""
    import torch._dynamo

    layers = model.get_base_model().get_decoder().layers
    # Each layer instance may need its own graph (layer_idx differs); don't fall back to eager.
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 2 * len(layers) + 8)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 4 * len(layers) + 64)
    for layer in layers:
        layer.compile()
