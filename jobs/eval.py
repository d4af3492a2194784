"""An eval job: questions, model, strategy, scores. Called by workers and the embedded runner alike."""

from __future__ import annotations

import time
from collections.abc import Callable

from jobs.data.datasets import load_questions
from jobs.errors import FatalJobError
from jobs.models.loading import load_model
from jobs.resources.memory import MemoryTracker
from jobs.scoring.results import EvalOutcome
from jobs.specs import EvalJobSpec
from jobs.strategies import get_strategy


def run(
    spec: EvalJobSpec,
    *,
    adapter_path: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalOutcome:
    """Evaluate `spec.model` (plus adapter) on `spec.dataset` with `spec.strategy`.

    `adapter_path` is the local directory of the adapter, resolved by the caller when
    the spec names a train job; `progress(done, total)` is called after each batch.
    """
    # Refuse an unwritten strategy before paying for the model load.
    strategy = get_strategy(spec.strategy.name)
    questions = load_questions(spec.dataset)
    loaded = load_model(spec.model, adapter_path=adapter_path or _adapter_uri(spec))
    with MemoryTracker(loaded.device) as memory:
        started = time.perf_counter()
        predictions = strategy(loaded, questions, spec, progress)
        wall_s = time.perf_counter() - started
    return EvalOutcome.from_predictions(
        predictions,
        wall_s=wall_s,
        peak_memory_mb=memory.peak_mb,
        memory_kind=memory.kind,
        device=loaded.device,
    )


def _adapter_uri(spec: EvalJobSpec) -> str | None:
    if spec.adapter is None:
        return None
    if spec.adapter.uri:
        return spec.adapter.uri
    # Only the worker knows where a train job's adapter was stored.
    raise FatalJobError(f"adapter of train job {spec.adapter.train_job} was not resolved to a path")
