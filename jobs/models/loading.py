"""Load a causal LM and its tokenizer from a ModelSpec, with an optional peft adapter.

Loading SmolLM2 from its GGUF costs ~20 s on CPU, and the embedded runner evaluates
several strategies of one model in one process, so the last model loaded is kept.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
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
    # Any, as LoadedModel.model: transformers types PreTrainedModel.to (functools.wraps) and eval poorly.
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(spec, device), **options)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.to(device)
    model.eval()
    label = spec.label + (f"+{Path(adapter_path).name}" if adapter_path else "")
    return LoadedModel(model=model, tokenizer=tokenizer, device=device, label=label)


def load_tokenizer(source: str, options: dict[str, Any]) -> Any:
    """The model's tokenizer, set up for batched generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    # Decoder-only models continue from the last position, so padding goes on the left.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
