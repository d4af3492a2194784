"""Memory classes: which queue a job goes to, which queues a worker consumes, what an OOM does.

Pure functions; the worker CLI, submit, reconcile and status call them.

- A job whose estimate fits the CPU class goes to the default queue, which every worker
  (CPU-only ones included) consumes: tiny models run anywhere.
- Otherwise it goes to the smallest GPU class whose usable memory (85% of the class, the
  rest is left to the owner's desktop) holds the estimate.
- A worker consumes the default queue plus its own class and every class below it; its
  class is the largest whose size its card has (5% tolerance: an "8 GB" card reports 7.8 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_QUEUE = "reasonfleet"  # the CPU class, consumed by every worker
CPU_CLASS_MIB = 2048
GPU_CLASSES_GB = (4, 8, 12, 16, 24, 48, 80)
USABLE = 0.85
CARD_TOLERANCE = 0.95


# Jobs whose model runs its repo's own code (trust_remote_code) wait in `<class queue>.remote-code`, which
# only workers started with `--allow-remote-code` consume: the owner's consent, per PC.
REMOTE_CODE_SUFFIX = ".remote-code"


def queue_name(gb: int) -> str:
    return f"rf-{gb}gb"


def remote_code_queue(queue: str) -> str:
    return queue if queue.endswith(REMOTE_CODE_SUFFIX) else queue + REMOTE_CODE_SUFFIX


def needs_remote_code(queue: str | None) -> bool:
    return bool(queue) and str(queue).endswith(REMOTE_CODE_SUFFIX)


def spec_runs_remote_code(spec: object) -> bool:
    """Whether a stored job spec (JSON) loads a model with trust_remote_code: eval and train name the model,
    an audit its train job's, a traces job its teacher's."""
    inner = spec.get("train") if isinstance(spec, dict) and spec.get("kind") == "audit" else spec
    if isinstance(spec, dict) and spec.get("kind") == "traces":  # the teacher's model
        section = spec.get("traces")
        inner = section.get("teacher") if isinstance(section, dict) else None
    model = inner.get("model") if isinstance(inner, dict) else None
    return isinstance(model, dict) and model.get("trust_remote_code") is True


def class_gb(queue: str) -> int:
    """0 for the default (CPU) queue, else the class size in GB."""
    queue = queue.removesuffix(REMOTE_CODE_SUFFIX)
    return 0 if queue in (DEFAULT_QUEUE, "cpu") else int(queue.removeprefix("rf-").removesuffix("gb"))


def queue_for(vram_mib: int | None) -> str | None:
    """The queue of a job needing `vram_mib`; None when no class is large enough."""
    if vram_mib is None or vram_mib <= CPU_CLASS_MIB:
        return DEFAULT_QUEUE
    for gb in GPU_CLASSES_GB:
        if vram_mib <= gb * 1024 * USABLE:
            return queue_name(gb)
    return None


def worker_class(vram_total_mib: int) -> int:
    """The largest class (GB) a card of this size serves; 0 for CPU-only or a card below 4 GB."""
    fitting = [gb for gb in GPU_CLASSES_GB if vram_total_mib >= gb * 1024 * CARD_TOLERANCE]
    return max(fitting, default=0)


def worker_queues(vram_total_mib: int, *, allow_remote_code: bool = False) -> list[str]:
    top = worker_class(vram_total_mib)
    queues = [DEFAULT_QUEUE] + [queue_name(gb) for gb in GPU_CLASSES_GB if gb <= top]
    return queues + [remote_code_queue(q) for q in queues] if allow_remote_code else queues


def one_class_up(queue: str) -> str | None:
    current = class_gb(queue)
    larger = [gb for gb in GPU_CLASSES_GB if gb > current]
    if not larger:
        return None
    return remote_code_queue(queue_name(larger[0])) if needs_remote_code(queue) else queue_name(larger[0])


@dataclass(frozen=True)
class OomDecision:
    action: Literal["smaller_batch", "class_up", "fail"]
    batch_size: int
    queue: str | None
    reason: str


def after_oom(*, batch_size: int, queue: str, ooms_before: int) -> OomDecision:
    """A CUDA OOM: first retry once with half the batch on the same class, then one class up, then fail.

    `ooms_before` counts the OOMs this job already had. The batch stays reduced when the
    job moves up: the larger card then has the most headroom.
    """
    if ooms_before == 0 and batch_size > 1:
        smaller = batch_size // 2
        return OomDecision("smaller_batch", smaller, queue, f"CUDA out of memory: retrying with batch {smaller}")
    larger = one_class_up(queue)
    if larger is None:
        reason = f"CUDA out of memory at batch {batch_size} on the largest class ({queue})"
        return OomDecision("fail", batch_size, None, reason)
    return OomDecision("class_up", batch_size, larger, f"CUDA out of memory on {queue}: routed to {larger}")


def unroutable_reason(job_queue: str | None, vram_mib: int | None, live_classes: list[int]) -> str | None:
    """Why a queued job cannot run on the fleet as registered now; None when some live worker can hold it."""
    need = f"~{(vram_mib or 0) / 1024:.1f} GB"
    if job_queue is None:
        return f"needs {need}, more than the largest memory class ({GPU_CLASSES_GB[-1]} GB)"
    if not live_classes:
        return f"needs {need} ({job_queue}); no live worker registered"
    if class_gb(job_queue) > max(live_classes):
        largest = max(live_classes)
        if largest:
            return f"needs {need} ({job_queue}); the largest live worker serves {largest} GB"
        return f"needs {need} ({job_queue}); only CPU workers are live"
    return None
