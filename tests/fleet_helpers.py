"""Helpers for the fleet tests: no-op and tiny-model jobs recorded straight into the database."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import psutil
from sqlmodel import col, select

from db import crud
from db.crud import JobDraft
from db.models import Job
from db.session import session_scope
from db.states import TERMINAL
from jobs.noop import NoopJobSpec
from jobs.resources.placement import queue_for
from jobs.specs import DatasetSpec, EvalJobSpec, ModelSpec, StrategySpec
from orchestrator.expand import content_hash

T = TypeVar("T")


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


def wait_until(
    condition: Callable[[], T], timeout: float, what: str, every: float = 0.3, detail: Callable[[], str] | None = None
) -> T:
    """Poll `condition` until it returns something truthy; after `timeout` s fail, saying what (and `detail()`) was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"; {detail()}" if detail else ""))


@dataclass
class Pace:
    """Deadlines from durations measured in this run: `factor` times the slowest one, never under `floor_s`.

    A busy 2-core machine stretches a worker's start and a job alike, so a bound that scales with
    a measured step holds there as on an idle machine, while a hang still fails in bounded time.
    """

    floor_s: float = 60.0
    factor: float = 4.0
    slowest_s: float = 0.0
    basis: str = "nothing measured yet"
    measured: list[str] = field(default_factory=list)

    def measure(self, what: str, seconds: float) -> float:
        self.measured.append(f"{what} {seconds:.1f} s")
        if seconds > self.slowest_s:
            self.slowest_s, self.basis = seconds, f"slowest measured step: {what}, {seconds:.1f} s"
        return seconds

    @contextmanager
    def timing(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.measure(what, time.monotonic() - started)

    def bound(self, steps: float = 1.0) -> float:
        """Seconds allowed for something that costs about `steps` of the slowest measured step."""
        return max(self.floor_s, self.factor * steps * self.slowest_s)

    def wait(self, condition: Callable[[], T], what: str, *, steps: float = 1.0, detail: Callable[[], str] | None = None) -> T:
        timeout = self.bound(steps)
        why = f"{what} (bound max({self.floor_s:g} s, {self.factor:g} x {steps:g} steps); {self.basis})"
        return wait_until(condition, timeout, why, detail=detail)


def job_states(job_ids: list[str]) -> str:
    """'3 succeeded, 1 running, 8 queued': for the message of a wait that timed out."""
    with session_scope() as session:
        states = session.exec(select(Job.state).where(col(Job.id).in_(job_ids))).all()
    return "jobs: " + ", ".join(f"{count} {state}" for state, count in Counter(states).most_common())


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
