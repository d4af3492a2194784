"""SQLModel tables. Postgres is the source of truth; SQLite serves the embedded default."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from db.states import JobState, now


class StateColumn(TypeDecorator[JobState]):
    """A job state stored as its name in a VARCHAR(16) (the schema since 0001) and read back as a JobState."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: JobState | str | None, dialect: Dialect) -> str | None:
        return None if value is None else JobState(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> JobState | None:
        return None if value is None else JobState(value)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class Sweep(SQLModel, table=True):
    """One submitted sweep file; resubmitting the same content finds this row again."""

    __tablename__ = "sweeps"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(index=True, max_length=200)
    seed: int
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    spec_hash: str = Field(unique=True, max_length=64)
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))
    # Train/eval contamination measured at submit (jobs.data.contamination.Overlap.to_json, one per pair of a
    # train source and the eval set); None for sweeps submitted before 0009 or without a local eval file.
    overlap: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Job(SQLModel, table=True):
    """A unit of work; identical specs share one row (spec_hash) and never run twice."""

    __tablename__ = "jobs"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(index=True, max_length=16)
    label: str = Field(max_length=500)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    spec_hash: str = Field(unique=True, max_length=64)
    state: JobState = Field(default=JobState.pending, sa_column=Column(StateColumn(), nullable=False, index=True))
    attempts: int = 0
    max_attempts: int = 3
    worker: str | None = Field(default=None, max_length=200)
    error: str | None = Field(default=None, sa_column=Column(Text))
    artifact_uri: str | None = Field(default=None, max_length=1000)
    progress_done: int = 0
    progress_total: int = 0
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    heartbeat_at: datetime | None = _ts()
    # Routing (issue 5): the VRAM estimate made at expansion and the memory-class queue it goes to.
    vram_mb: int | None = None
    queue: str | None = Field(default=None, max_length=64)
    ooms: int = 0  # CUDA out-of-memory errors so far (jobs.resources.placement.after_oom decides what follows)


class SweepJob(SQLModel, table=True):
    """Membership: a job shared by two sweeps (same spec) belongs to both."""

    __tablename__ = "sweep_jobs"

    sweep_id: str = Field(foreign_key="sweeps.id", primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    position: int = 0


class JobDependency(SQLModel, table=True):
    """`job_id` may start only after `depends_on_id` succeeded."""

    __tablename__ = "job_dependencies"

    job_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32)
    depends_on_id: str = Field(foreign_key="jobs.id", primary_key=True, max_length=32, index=True)


class EvalResult(SQLModel, table=True):
    """The aggregate of one eval job; at most one per job (re-deliveries write nothing)."""

    __tablename__ = "eval_results"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", unique=True, max_length=32)
    model: str = Field(max_length=300)
    adapter: str | None = Field(default=None, max_length=300)
    strategy: str = Field(max_length=300)
    dataset: str = Field(max_length=300)
    n: int
    correct: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    mean_output_tokens: float
    wall_s: float
    tokens_per_s: float
    peak_memory_mb: float
    memory_kind: str = Field(max_length=16)
    device: str = Field(max_length=100)
    seed: int
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))
    # Revision 0002_eval_metrics (jobs.scoring.metrics defines each); NULL for rows written
    # before it, and for metrics that do not apply to the run's strategy.
    median_output_tokens: float | None = None
    mean_thinking_tokens: float | None = None
    mean_answer_tokens: float | None = None
    res: float | None = None
    mean_latency_s: float | None = None
    truncated: int | None = None
    repetition_loops: int | None = None
    fixes: int | None = None
    breaks: int | None = None
    mean_agreement: float | None = None
    # Revision 0005_failure_taxonomy: failure label -> wrong predictions that carry it (jobs.scoring.taxonomy).
    taxonomy: dict[str, int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Revision 0008_model_runtime: perplexity on the reference solutions (when the spec asked for it), and what
    # ran (jobs.models.loading.LoadedModel.info: quantization, compute dtype, thinking mode, warnings).
    perplexity: float | None = None
    run_info: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Revision 0006_lm_eval_scores: lm-evaluation-harness's GSM8K exact match under its strict-match and
    # flexible-extract filters (jobs.scoring.lm_eval_compat), and the task (gsm8k | gsm8k_cot) whose rules they follow.
    strict_match: float | None = None
    flexible_extract: float | None = None
    lm_eval_task: str | None = Field(default=None, max_length=16)


class Prediction(SQLModel, table=True):
    """One question's answer within an eval job."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("job_id", "question_id", name="uq_prediction_job_question"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=32)
    question_id: str = Field(max_length=200)
    question: str = Field(sa_column=Column(Text, nullable=False))
    reference_answer: str = Field(max_length=100)
    raw_output: str = Field(sa_column=Column(Text, nullable=False))
    extracted_answer: str | None = Field(default=None, max_length=100)
    correct: bool
    output_tokens: int
    latency_s: float
    complexity: int
    truncated: bool = False
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Revision 0005_failure_taxonomy: why a wrong answer fails (jobs.scoring.taxonomy); NULL when right.
    failure_label: str | None = Field(default=None, max_length=32, index=True)
    failure_exact: bool | None = None  # True only when the answer matched a known wrong reading
    failure_evidence: str | None = Field(default=None, sa_column=Column(Text))
    failure_reading: str | None = Field(default=None, max_length=64)


class TrainResult(SQLModel, table=True):
    """What a train job produced: its adapter in the artifact store and how training went."""

    __tablename__ = "train_results"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", unique=True, max_length=32)
    adapter_uri: str = Field(max_length=1000)
    adapter_bytes: int
    adapter_sha256: str = Field(max_length=64)
    mode: str = Field(max_length=32)  # qlora-nf4-cuda | lora-cuda | lora-cpu
    device: str = Field(max_length=100)
    steps: int
    examples: int
    loss_curve: list[float] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tokens_seen: int
    wall_s: float
    tokens_per_s: float
    peak_memory_mb: float
    memory_kind: str = Field(max_length=16)
    resumed_from_step: int | None = None
    seed: int
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))


class AuditResult(SQLModel, table=True):
    """Memorisation audit of one train job's adapter on its own training examples."""

    __tablename__ = "audit_results"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", unique=True, max_length=32)
    train_job_id: str = Field(foreign_key="jobs.id", index=True, max_length=32)
    n: int
    mean_nll: float
    correct: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    per_example: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    wall_s: float
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))


class Worker(SQLModel, table=True):
    """One `workers start` process: what it has, what it is doing, and when it last said so."""

    __tablename__ = "workers"

    name: str = Field(primary_key=True, max_length=200)  # the Celery hostname, e.g. reasonfleet@pc-of-ana
    host: str = Field(max_length=200)
    pid: int = 0
    gpu_name: str | None = Field(default=None, max_length=200)  # None: a CPU-only worker
    vram_total_mb: int = 0
    vram_free_mb: int = 0
    driver: str | None = Field(default=None, max_length=64)
    version: str = Field(max_length=32)
    memory_class: str = Field(max_length=16)  # the largest memory-class queue it consumes
    queues: str = Field(default="", max_length=500)  # comma-separated
    state: str = Field(default="idle", max_length=16)  # idle | busy | paused | stopped (gone is derived)
    current_job: str | None = Field(default=None, max_length=32)
    pause_reason: str | None = Field(default=None, max_length=300)
    started_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))
    heartbeat_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))


class DatasetBlob(SQLModel, table=True):
    """A local data file a sweep shipped (jobs.data.shipped), by the sha256 of its bytes: workers read this,
    never the path the sweep names. Content-addressed, so a file two sweeps share is stored once."""

    __tablename__ = "dataset_blobs"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))


class CuratedDataset(SQLModel, table=True):
    """A training set a curate job built (jobs.data.curation): its JSONL is a dataset blob under `sha256`
    and an artifact under `uri`; `name` is the curate section's, a name curated twice has two versions."""

    __tablename__ = "curated_datasets"

    sha256: str = Field(primary_key=True, max_length=64)
    name: str = Field(index=True, max_length=200)
    job_id: str = Field(foreign_key="jobs.id", index=True, max_length=32)
    count: int
    uri: str | None = Field(default=None, max_length=1000)
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=now, sa_column=Column(DateTime(timezone=True), nullable=False))
