"""The embedded executor: the sweep's jobs run in this process, in dependency order."""

from __future__ import annotations

from collections import deque

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from db.models import Job
from db.session import session_scope


def run_in_process(job_ids: list[str], console: Console) -> dict[str, str]:
    """Run the queued jobs and whatever they release; returns each job's final state."""
    from workers.runner import execute_job  # ML imports only when there is work

    pending = deque(job_ids)
    final: dict[str, str] = {}
    with _progress(console) as progress:
        while pending:
            job_id = pending.popleft()
            task = progress.add_task(_label(job_id), total=None)

            def report(done: int, total: int, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total)

            outcome = execute_job(job_id, worker="embedded", on_progress=report)
            progress.update(task, description=f"{_label(job_id)} [bold]{outcome.state}")
            final[job_id] = outcome.state
            pending.extend(j for j in outcome.ready if j not in pending)
    return final


def _label(job_id: str) -> str:
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.label if job else job_id


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
