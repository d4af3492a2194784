"""Per-job state of a sweep, as a rich table that fits the terminal (ids and states always whole)."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from db.models import Job
from db.states import TERMINAL, JobState
from orchestrator.tables import Column, fitted

STATE_STYLE = {
    JobState.pending: "dim",
    JobState.queued: "cyan",
    JobState.running: "yellow",
    JobState.succeeded: "green",
    JobState.failed: "red",
    JobState.cancelled: "magenta",
}


def _state(job: Job) -> str:
    return f"[{STATE_STYLE.get(job.state, '')}]{job.state}[/]"


def _error(job: Job) -> str:
    return (job.error or "").strip().splitlines()[0][:200] if job.error else ""


# Narrow terminals lose the worker first, then the attempts, the kind and the progress; never the id or state.
COLUMNS: tuple[Column[Job], ...] = (
    Column("job", lambda j: j.id, whole=True),
    Column("kind", lambda j: j.kind, drop=3, whole=True),
    Column("run", lambda j: j.label, min_width=12),
    Column("state", _state, whole=True),
    Column("progress", lambda j: f"{j.progress_done}/{j.progress_total}" if j.progress_total else "", drop=2,
           whole=True, justify="right"),
    Column("attempts", lambda j: str(j.attempts), drop=4, whole=True, justify="right"),
    Column("worker", lambda j: j.worker or "", drop=5),
    Column("error", _error, drop=1, min_width=12),
)


def status_table(title: str, jobs: list[Job], width: int = 80) -> Table:
    counts = Counter(job.state for job in jobs)
    summary = ", ".join(f"{counts[s]} {s}" for s in JobState if counts[s])
    columns = [c for c in COLUMNS if c.header != "error" or any(job.error for job in jobs)]
    return fitted(f"{title} · {summary}", columns, jobs, width=width)


def all_finished(jobs: list[Job]) -> bool:
    return all(JobState(job.state) in TERMINAL for job in jobs)
