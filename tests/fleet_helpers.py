"""Helpers for the fleet tests: no-op and tiny-model jobs recorded straight into the database."""

from __future__ import annotations

import time

import psutil

from db import crud
from db.crud import JobDraft
from db.session import session_scope
from db.states import TERMINAL
from jobs.noop import NoopJobSpec
from jobs.resources.placement import queue_for
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from orchestrator.expand import content_hash


def noop_drafts(count: int, *, sleep_s: float = 0.0, tag: str = "") -> list[JobDraft]:
    drafts = []
    for i in range(count):
        spec = NoopJobSpec(sleep_s=sleep_s, tag=f"{tag}-{i}").model_dump(mode="json")
        drafts.append(JobDraft(spec_hash=content_hash(spec), kind="noop", label=f"noop {tag} #{i}", spec=spec, vram_mb=0, queue=queue_for(0)))
    return drafts


def tiny_eval_drafts(model_dir: str, count: int, *, n: int = 4, max_new_tokens: int = 8, tag: str = "") -> list[JobDraft]:
    """`count` distinct short eval jobs on the tiny model (the synthetic dataset's seed varies)."""
    drafts = []
    for i in range(count):
        spec = EvalJobSpec(
            model=ModelSpec(id=model_dir, name="tiny"), dataset=DatasetSpec(name="synthetic", n=n, complexity=(1, 2), seed=i),
            strategy=StrategySpec(name="greedy"), max_new_tokens=max_new_tokens, batch_size=2, seed=hash(tag) % 1000,
        ).model_dump(mode="json")
        drafts.append(JobDraft(spec_hash=content_hash(spec), kind="eval", label=f"tiny {tag} seed {i}", spec=spec, vram_mb=0, queue=queue_for(0)))
    return drafts


def record(name: str, drafts: list[JobDraft], *, max_attempts: int = 3) -> tuple[str, list[str]]:
    with session_scope() as session:
        report = crud.record_sweep(
            session, name=name, seed=0, spec={"name": name}, spec_hash=content_hash({"name": name, "n": len(drafts)}),
            drafts=drafts, max_attempts=max_attempts,
        )
        return report.sweep.id, list(report.to_enqueue)


def wait_until(condition, timeout: float, what: str, every: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def sweep_done(sweep_id: str):  # type: ignore[no-untyped-def]
    with session_scope() as session:
        jobs = crud.sweep_jobs(session, sweep_id=sweep_id)
    return jobs if jobs and all(j.state in {s.value for s in TERMINAL} for j in jobs) else None


def kill_tree(pid: int) -> None:
    """kill -9 a worker: its parent and every pool child, at once (a PC switched off)."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for process in [*parent.children(recursive=True), parent]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
