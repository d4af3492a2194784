"""Per-job state of a sweep, as a rich table."""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from db.models import Job
from db.states import TERMINAL, JobState

STATE_STYLE = {
    JobState.pending: "dim",
    JobState.queued: "cyan",
    JobState.running: "yellow",
    JobState.succeeded: "green",
    JobState.failed: "red",
    JobState.cancelled: "magenta",
}


def status_table(title: str, jobs: list[Job]) -> Table:
    counts = Counter(job.state for job in jobs)
    summary = ", ".join(f"{counts[s]} {s}" for s in JobState if counts[s])
    table = Table(title=f"{title} · {summary}", title_justify="left")
    for header in ("job", "kind", "run", "state", "progress", "attempts", "worker", "error"):
        table.add_column(header)
    for job in jobs:
        style = STATE_STYLE.get(job.state, "")
        progress = f"{job.progress_done}/{job.progress_total}" if job.progress_total else ""
        error = (job.error or "").strip().splitlines()[0][:80] if job.error else ""
        table.add_row(
            job.id,
            job.kind,
            job.label,
            f"[{style}]{job.state}[/]",
            progress,
            str(job.attempts),
            job.worker or "",
            error,
        )
    return table


def all_finished(jobs: list[Job]) -> bool:
    return all(JobState(job.state) in TERMINAL for job in jobs)
