"""The embedded executor: the sweep's jobs run in this process, in dependency order.

On a terminal their progress is a live rich bar; anywhere else (a pipe, a log file, CI) it is plain lines,
a few per job, because a redrawn bar is a stream of `\\r` frames there.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

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


class Reporter(Protocol):
    def start(self, label: str) -> None: ...
    def update(self, done: int, total: int) -> None: ...
    def end(self, label: str, state: str) -> None: ...


def run_in_process(job_ids: list[str], console: Console) -> dict[str, str]:
    """Run the queued jobs and whatever they release; returns each job's final state.

    Ctrl-C or SIGTERM cancels the running job and those still waiting here (a queued job of an
    embedded sweep has no other executor), then exits 130 or 143: a resubmit runs them again,
    and a train job resumes from its last checkpoint.
    """
    if not console.is_terminal:
        # tqdm reads TQDM_* once, when imported (below, with the ML code): transformers' GGUF de-quantisation
        # bar would otherwise fill a log with `\r` frames.
        os.environ.setdefault("TQDM_DISABLE", "1")
    from workers.runner import execute_job  # ML imports only when there is work

    pending = deque(job_ids)
    final: dict[str, str] = {}
    running: list[str] = []
    try:
        with _signals_interrupt(), _reporter(console) as reporter:
            while pending:
                job_id = pending.popleft()
                running[:] = [job_id]
                label = _label(job_id)
                reporter.start(label)
                outcome = execute_job(job_id, worker="embedded", on_progress=reporter.update)
                running.clear()
                reporter.end(label, outcome.state)
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


@contextmanager
def _reporter(console: Console) -> Iterator[Reporter]:
    if not console.is_terminal:
        yield PlainProgress(console)
        return
    with _progress(console) as progress:
        yield BarProgress(progress)


class BarProgress:
    """A rich bar per job, redrawn in place (a terminal)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def start(self, label: str) -> None:
        self.task = self.progress.add_task(label, total=None)

    def update(self, done: int, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def end(self, label: str, state: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, description=f"{label} [bold]{state}")


class PlainProgress:
    """One line when a job starts, one per tenth of its work (at most every `every_s` seconds), one when it ends."""

    def __init__(self, console: Console, every_s: float = 30.0) -> None:
        self.console = console
        self.every_s = every_s
        self.label = ""
        self.started = self.last_line = 0.0
        self.last_tenth = -1

    def start(self, label: str) -> None:
        self.label, self.last_tenth = label, -1
        self.started = self.last_line = time.monotonic()
        self._line("started")

    def update(self, done: int, total: int) -> None:
        tenth = 10 * done // total if total else 0
        if tenth > self.last_tenth and (time.monotonic() - self.last_line >= self.every_s or done == total):
            self.last_tenth = tenth
            self.last_line = time.monotonic()
            self._line(f"{done}/{total}")

    def end(self, label: str, state: str) -> None:
        self._line(f"{state} after {time.monotonic() - self.started:.0f} s")

    def _line(self, what: str) -> None:
        self.console.print(f"{self.label}: {what}", highlight=False, markup=False)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
