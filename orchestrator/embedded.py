"""The embedded executor: the sweep's jobs run in this process, in dependency order."""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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
from db.states import TERMINAL, JobState, transition

INTERRUPTED = "interrupted (Ctrl-C or SIGTERM) during an embedded submit; submit the sweep again to run it"


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt: not an error of the job's
    """SIGINT or SIGTERM arrived while jobs ran in this process."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum  # what a shell reports for a process the signal ended: 130, 143


def run_in_process(job_ids: list[str], console: Console) -> dict[str, str]:
    """Run the queued jobs and whatever they release; returns each job's final state.

    Ctrl-C or SIGTERM cancels the running job and those still waiting here (a queued job of an
    embedded sweep has no other executor), then exits 130 or 143: a resubmit runs them again,
    and a train job resumes from its last checkpoint.
    """
    from workers.runner import execute_job  # ML imports only when there is work

    pending = deque(job_ids)
    final: dict[str, str] = {}
    running: list[str] = []
    try:
        with _signals_interrupt(), _progress(console) as progress:
            while pending:
                job_id = pending.popleft()
                running[:] = [job_id]
                task = progress.add_task(_label(job_id), total=None)

                def report(done: int, total: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done, total=total)

                outcome = execute_job(job_id, worker="embedded", on_progress=report)
                running.clear()
                progress.update(task, description=f"{_label(job_id)} [bold]{outcome.state}")
                final[job_id] = outcome.state
                pending.extend(j for j in outcome.ready if j not in pending)
    except (Interrupted, KeyboardInterrupt) as stop:
        with _signals_ignored():  # a second Ctrl-C must not cut the bookkeeping short
            cancelled = cancel_unfinished([*running, *pending])
        console.print(f"[yellow]interrupted: {len(cancelled)} job(s) cancelled; submit the sweep again to run them[/]")
        raise SystemExit(stop.exit_code if isinstance(stop, Interrupted) else 130) from None
    return final


def cancel_unfinished(job_ids: list[str]) -> list[str]:
    """Cancel those of `job_ids` that are queued or running, saying why; returns their ids."""
    cancelled = []
    with session_scope() as session:
        for job_id in dict.fromkeys(job_ids):
            job = session.get(Job, job_id)
            if job is not None and job.state not in TERMINAL and job.state != JobState.pending:
                transition(job, JobState.cancelled, error=INTERRUPTED)
                cancelled.append(job_id)
    return cancelled


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGINT) raise Interrupted in the main thread while jobs run; the old handlers come back after."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
