"""Load a causal LM and its tokenizer from a ModelSpec, with an optional peft adapter.

Loading SmolLM2 from its GGUF costs ~20 s on CPU, and the embedded runner evaluates
several strategies of one model in one process, so the last model loaded is kept.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jobs.errors import FatalJobError
from jobs.specs import ModelSpec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, or a peft PeftModel wrapping one
    tokenizer: Any  # its tokenizer, left-padded, with a pad token
    device: str
    label: str
    # What ran, recorded with the run: quantization ("nf4", "int8", "none", "bnb-4bit" for a checkpoint that
    # came quantized), its compute dtype, the thinking mode and the template's switch, warnings.
    info: dict[str, Any] = field(default_factory=dict)
    # (`<think>`, `</think>`) token ids when the tokenizer has each as one token (Qwen3): thinking is counted
    # on the generated ids (jobs.scoring.thinking.thinking_count); None otherwise.
    think_ids: tuple[int, int] | None = None


# One entry: keeping several models would hold several copies of weights in memory.
_cache: dict[tuple[str, str | None, str], LoadedModel] = {}


def clear_cache() -> None:
    """Forget the cached model so that its memory can be freed."""
    _cache.clear()


def keep(spec: ModelSpec, loaded: LoadedModel, adapter_path: str | None = None) -> None:
    """Make `loaded` the cached model for `spec`: a caller that holds a model (a test
    session's SmolLM2) hands it back after another load replaced it, instead of reloading."""
    clear_cache()
    _cache[(spec.model_dump_json(), adapter_path, loaded.device)] = loaded


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    if spec.dtype != "auto":
        return DTYPES[spec.dtype]
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def resolve_source(spec: ModelSpec) -> tuple[str, str | None]:
    """(what from_pretrained loads, gguf file name inside it or None)."""
    if spec.id:
        return spec.id, spec.gguf_file
    if spec.path:
        gguf = Path(spec.path)
        if not gguf.is_file():
            raise FatalJobError(f"model.path {spec.path!r} is not a file")
        return str(gguf.parent), gguf.name
    return str(package_dir(str(spec.package))), package_gguf(str(spec.package)).name


def package_dir(name: str) -> Path:
    """An installed package's directory, found without importing it (its __init__ may not import)."""
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise FatalJobError(f"model.package {name!r} is not an installed package")
    return Path(list(found.submodule_search_locations)[0])


def package_gguf(name: str) -> Path:
    """The single .gguf file a package ships."""
    files = sorted(package_dir(name).glob("*.gguf"))
    if len(files) != 1:
        raise FatalJobError(f"model.package {name!r} must ship exactly one .gguf file, found {len(files)}")
    return files[0]


def load_model(
    spec: ModelSpec,
    adapter_path: str | None = None,
    device: str | None = None,
    *,
    use_cache: bool = True,
) -> LoadedModel:
    """The model and tokenizer `spec` names, in eval mode on `device` (default: CUDA if present).

    With `use_cache` the last model loaded is returned again for the same spec, adapter
    and device, and replaced by any other.
    """
    device = device or default_device()
    key = (spec.model_dump_json(), adapter_path, device)
    if use_cache and key in _cache:
        return _cache[key]
    if use_cache:
        clear_cache()  # free the previous weights before loading new ones
    loaded = _load(spec, adapter_path, device)
    if use_cache:
        _cache[key] = loaded
    return loaded


def _load(spec: ModelSpec, adapter_path: str | None, device: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM  # heavy; keep `import jobs` light
    from transformers.utils import logging as hf_logging

    # Our own progress view reports the job; GGUF bars would bury it.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers

    source, gguf_file = resolve_source(spec)
    options: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if gguf_file:
        options["gguf_file"] = gguf_file
    tokenizer = load_tokenizer(source, options)
    info: dict[str, Any] = {"device": device, "warnings": []}
    info["thinking"] = apply_thinking(tokenizer, spec, info["warnings"])
    quantized = quantization_options(spec, source, options, device, info)
    # Any, as LoadedModel.model: transformers types PreTrainedModel.to (functools.wraps) and eval poorly.
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(spec, device), **options, **quantized)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    if not quantized:  # bitsandbytes weights are placed by device_map and cannot be moved
        model.to(device)
    model.eval()
    label = spec.label + (f"+{Path(adapter_path).name}" if adapter_path else "")
    return LoadedModel(
        model=model, tokenizer=tokenizer, device=device, label=label, info=info, think_ids=delimiter_ids(tokenizer)
    )


def quantization_options(
    spec: ModelSpec, source: str, options: dict[str, Any], device: str, info: dict[str, Any]
) -> dict[str, Any]:
    """from_pretrained's quantization arguments for `spec` on `device` ({} for full-precision weights); records
    in `info` what will run. A checkpoint already quantized with bitsandbytes loads as it is."""
    prequantized = None if "gguf_file" in options else checkpoint_quantization(source, options)
    info["quantization"] = prequantized or spec.quantization
    info["compute_dtype"] = str(resolve_dtype(spec, device)).removeprefix("torch.")
    if prequantized and spec.quantization != "none":
        raise FatalJobError(
            f"model.quantization {spec.quantization!r}: {spec.label} is already quantized ({prequantized}); "
            "leave model.quantization at none to load it as it is"
        )
    if info["quantization"] == "none":
        return {}
    if not device.startswith("cuda"):
        if not spec.allow_cpu_fallback:
            raise FatalJobError(
                f"model.quantization {info['quantization']!r} needs a CUDA GPU (bitsandbytes) and this worker has "
                "none; set model.allow_cpu_fallback: true to run bitsandbytes' CPU kernels instead (slow)"
            )
        info["warnings"].append(f"{info['quantization']} ran on the CPU (model.allow_cpu_fallback)")
    if prequantized:
        return {"device_map": {"": device}}
    return {"quantization_config": bitsandbytes_config(spec.quantization, resolve_dtype(spec, device)),
            "device_map": {"": device}}


def bitsandbytes_config(quantization: str, compute_dtype: torch.dtype) -> Any:
    """The BitsAndBytesConfig of an eval: NF4 with double quantization as QLoRA trains, or LLM.int8()."""
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]  # untyped in transformers
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def checkpoint_quantization(source: str, options: dict[str, Any]) -> str | None:
    """`bnb-4bit` or `bnb-8bit` for a checkpoint saved quantized by bitsandbytes (unsloth/Qwen3-8B-bnb-4bit and
    local copies of it), else None; read from its config.json's quantization_config."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError) as error:
        raise FatalJobError(f"model {source!r}: cannot read its config: {error}") from None
    quantization = getattr(config, "quantization_config", None)
    if quantization is None:
        return None
    settings = quantization if isinstance(quantization, dict) else quantization.to_dict()
    if settings.get("quant_method") != "bitsandbytes":
        raise FatalJobError(
            f"model {source!r} is quantized with {settings.get('quant_method')!r}; only bitsandbytes "
            "checkpoints (or full-precision ones with model.quantization) are supported"
        )
    return "bnb-8bit" if settings.get("load_in_8bit") else "bnb-4bit"


def delimiter_ids(tokenizer: Any) -> tuple[int, int] | None:
    """The ids of `<think>` and `</think>` when the tokenizer has each as a single token."""
    found = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("<think>", "</think>")]
    if all(len(ids) == 1 for ids in found):
        return found[0][0], found[1][0]
    return None


THINKING_SWITCH = "enable_thinking"  # the chat-template variable Qwen3 (and templates like it) read


def apply_thinking(tokenizer: Any, spec: ModelSpec, warnings: list[str]) -> dict[str, Any]:
    """Set the tokenizer's chat template to `spec.thinking` and say what was done.

    The switch is written into the template itself (`{% set enable_thinking = … %}` ahead of it), so every
    prompt rendered with this tokenizer (eval, perplexity, budget forcing) gets the same mode without each
    caller passing it. `on` for a template without the switch is an error; `off` only a warning.
    """
    template = tokenizer.chat_template
    switch = isinstance(template, str) and THINKING_SWITCH in template
    recorded = {"mode": spec.thinking, "template_switch": switch}
    if spec.thinking == "auto":
        return recorded
    if not switch:
        if spec.thinking == "on":
            raise FatalJobError(
                f"model.thinking: on, but {spec.label}'s chat template has no thinking switch ({THINKING_SWITCH})"
            )
        warnings.append(f"model.thinking: off, but {spec.label}'s chat template has no thinking switch: unchanged")
        return recorded
    value = "true" if spec.thinking == "on" else "false"
    tokenizer.chat_template = f"{{%- set {THINKING_SWITCH} = {value} %}}" + template
    return recorded


def load_tokenizer(source: str, options: dict[str, Any]) -> Any:
    """The model's tokenizer, set up for batched generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    # Decoder-only models continue from the last position, so padding goes on the left.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
