"""Routing by memory: the VRAM estimate, memory classes, worker queues and the OOM decision (pure functions).

A real CUDA OOM cannot happen on this CPU-only machine, so `after_oom` is tested as the
pure decision it is; the worker applies it when torch raises `torch.cuda.OutOfMemoryError`.
"""

from __future__ import annotations

import pytest

from jobs.resources.placement import (
    DEFAULT_QUEUE,
    after_oom,
    one_class_up,
    queue_for,
    unroutable_reason,
    worker_class,
    worker_queues,
)
from jobs.resources.vram import estimate, model_shape
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec, TrainJobSpec

DATA = DatasetSpec(name="synthetic", n=5)


def eval_spec(model: str, **changes: object) -> EvalJobSpec:
    return EvalJobSpec(model=ModelSpec(id=model), dataset=DATA, strategy=StrategySpec(name="greedy"), **changes)  # type: ignore[arg-type]


def test_estimates_grow_with_model_batch_sequence_and_rank() -> None:
    small, large = estimate(eval_spec("Qwen/Qwen2.5-0.5B-Instruct")), estimate(eval_spec("Qwen/Qwen2.5-7B-Instruct"))
    assert small.basis == "known:qwen/qwen2.5-0.5b" and 1000 < small.mib < 2048 < large.mib
    assert estimate(eval_spec("Qwen/Qwen2.5-0.5B-Instruct", batch_size=64)).mib > small.mib
    assert estimate(eval_spec("Qwen/Qwen2.5-0.5B-Instruct", max_new_tokens=4096)).mib > small.mib
    train = lambda rank, method="qlora": estimate(TrainJobSpec(model=ModelSpec(id="Qwen/Qwen2.5-7B"), method=method, lora_rank=rank, traces=10))  # noqa: E731
    assert train(64).mib > train(8).mib
    assert train(8, "lora").mib > train(8).mib + 8000  # bf16 weights instead of nf4: ~11 GB more
    # 7B at batch 4 x 1024 tokens with gradient checkpointing: QLoRA ~7 GB, bf16 LoRA ~19 GB
    assert queue_for(train(16).mib) == "rf-12gb" and queue_for(train(16, "lora").mib) == "rf-24gb"


def test_shape_from_a_local_config_the_name_or_a_guess(tiny_model) -> None:
    shape, basis = model_shape(ModelSpec(id=str(tiny_model.path)))
    assert basis == "config.json" and shape.layers == 2 and shape.hidden == 64
    assert estimate(eval_spec(str(tiny_model.path))).mib < 600  # tiny: the CUDA context dominates
    assert model_shape(ModelSpec(id="someone/Fancy-13B-chat"))[1] == "name:13b"
    assert model_shape(ModelSpec(id="someone/mystery"))[1] == "guess:1B"


@pytest.mark.parametrize(
    ("mib", "queue"),
    [(None, DEFAULT_QUEUE), (500, DEFAULT_QUEUE), (2048, DEFAULT_QUEUE), (2049, "rf-4gb"), (3481, "rf-4gb"), (3482, "rf-8gb"),
     (20_000, "rf-24gb"), (69_000, "rf-80gb"), (70_000, None)],
)
def test_queue_is_the_smallest_class_that_holds_the_job(mib: int | None, queue: str | None) -> None:
    assert queue_for(mib) == queue


def test_a_worker_consumes_its_class_and_every_class_below() -> None:
    assert worker_queues(0) == [DEFAULT_QUEUE]  # CPU only
    assert worker_queues(3 * 1024) == [DEFAULT_QUEUE]  # a 3 GB card: too small for any GPU class
    assert worker_queues(7982) == [DEFAULT_QUEUE, "rf-4gb", "rf-8gb"]  # an "8 GB" card reports 7.8 GiB
    assert worker_queues(24_564) == [DEFAULT_QUEUE, "rf-4gb", "rf-8gb", "rf-12gb", "rf-16gb", "rf-24gb"]
    assert worker_class(81_559) == 80


def test_oom_retries_once_with_a_smaller_batch_then_moves_one_class_up_then_fails() -> None:
    first = after_oom(batch_size=8, queue="rf-8gb", ooms_before=0)
    assert (first.action, first.batch_size, first.queue) == ("smaller_batch", 4, "rf-8gb")
    second = after_oom(batch_size=4, queue="rf-8gb", ooms_before=1)
    assert (second.action, second.batch_size, second.queue) == ("class_up", 4, "rf-12gb")
    assert after_oom(batch_size=1, queue="rf-4gb", ooms_before=0).action == "class_up"  # batch 1 cannot shrink
    last = after_oom(batch_size=2, queue="rf-80gb", ooms_before=3)
    assert last.action == "fail" and "largest class" in last.reason
    assert one_class_up(DEFAULT_QUEUE) == "rf-4gb" and one_class_up("rf-80gb") is None


def test_status_says_why_a_job_cannot_run() -> None:
    assert unroutable_reason("rf-24gb", 20_000, [0, 8, 12]) == "needs ~19.5 GB (rf-24gb); the largest live worker serves 12 GB"
    assert unroutable_reason("rf-8gb", 5000, [0]) == "needs ~4.9 GB (rf-8gb); only CPU workers are live"
    assert unroutable_reason(DEFAULT_QUEUE, 500, []) == "needs ~0.5 GB (reasonfleet); no live worker registered"
    assert unroutable_reason(None, 90_000, [80]).startswith("needs ~87.9 GB, more than the largest memory class")
    assert unroutable_reason("rf-8gb", 5000, [0, 8]) is None
