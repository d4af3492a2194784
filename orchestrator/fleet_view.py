"""`orchestrator workers` and the routing notes of `orchestrator status`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table

from db import fleet
from db.models import Job, Worker
from db.settings import get_settings
from db.states import JobState, now
from jobs.resources.placement import class_gb, needs_remote_code, unroutable_reason
from orchestrator.tables import Column, fitted


def worker_rows(workers: list[Worker], *, at: datetime | None = None) -> list[dict[str, Any]]:
    at = at or now()
    # A worker heart-beats every few seconds; REASONFLEET_GONE_AFTER_S without one and it is shown as gone.
    gone_after_s = get_settings().gone_after_s
    rows = []
    for w in workers:
        state = fleet.display_state(w, gone_after_s=gone_after_s, at=at)
        doing = {"busy": f"busy on job {w.current_job}", "paused": f"paused: {w.pause_reason or ''}"}.get(state, state)
        rows.append({
            "name": w.name, "host": w.host, "state": state, "doing": doing,
            "gpu": w.gpu_name or "CPU only", "vram_total_mb": w.vram_total_mb, "vram_free_mb": w.vram_free_mb,
            "driver": w.driver or "", "class": w.memory_class, "queues": w.queues, "version": w.version,
            "started_at": w.started_at.isoformat(), "heartbeat_age_s": _age_s(w.heartbeat_at, at),
        })
    return rows


def _age_s(moment: datetime, at: datetime) -> float:
    # SQLite hands back naive datetimes (UTC) even for timezone-aware columns.
    aware = moment if moment.tzinfo else moment.replace(tzinfo=at.tzinfo)
    return round((at - aware).total_seconds(), 1)


STATE_STYLE = {"idle": "green", "busy": "yellow", "paused": "magenta", "gone": "red", "stopped": "dim"}
# A narrow terminal loses the version first, then the host, the last beat and the VRAM; never the name or state.
WORKER_COLUMNS: tuple[Column[dict[str, Any]], ...] = (
    Column("worker", lambda r: r["name"], whole=True),
    Column("host", lambda r: r["host"], drop=3),
    Column("state", lambda r: f"[{STATE_STYLE.get(r['state'], '')}]{r['doing']}[/]", min_width=12),
    Column("gpu", lambda r: r["gpu"], min_width=8),
    Column("vram free/total MB", lambda r: f"{r['vram_free_mb']}/{r['vram_total_mb']}", drop=1, whole=True,
           justify="right"),
    Column("class", lambda r: r["class"], whole=True),
    Column("last beat", lambda r: f"{r['heartbeat_age_s']:.0f} s ago", drop=2, whole=True, justify="right"),
    Column("version", lambda r: r["version"], drop=4, whole=True),
)


def workers_table(rows: list[dict[str, Any]], width: int = 80) -> Table:
    return fitted(f"{len(rows)} worker(s)", WORKER_COLUMNS, rows, width=width)


def no_workers_note(*, embedded: bool) -> str:
    """What an empty fleet means: embedded mode has no workers at all; a fleet has none registered yet."""
    if embedded:
        return (
            "no workers: embedded mode (REASONFLEET_BROKER_URL is unset), where `orchestrator submit` runs the jobs "
            "in its own process. Workers exist only with a broker: set REASONFLEET_BROKER_URL and "
            "REASONFLEET_DATABASE_URL, then run `workers start` on each machine (README: Running a fleet)."
        )
    return "no worker has registered yet: run `workers start` on each machine that lends its GPU"


def live_classes(workers: list[Worker]) -> list[int]:
    gone_after_s = get_settings().gone_after_s
    alive = [w for w in workers if fleet.display_state(w, gone_after_s=gone_after_s) not in (fleet.GONE, fleet.STOPPED)]
    return [class_gb(w.memory_class) for w in alive]


def _remote_code_reason(job: Job, workers: list[Worker]) -> str | None:
    """A job whose model runs its repo's code waits for a worker whose owner allowed it (--allow-remote-code)."""
    if not needs_remote_code(job.queue):
        return None
    gone_after_s = get_settings().gone_after_s
    alive = [w for w in workers if fleet.display_state(w, gone_after_s=gone_after_s) not in (fleet.GONE, fleet.STOPPED)]
    if any(job.queue in w.queues.split(",") for w in alive):
        return None
    return (
        f"model.trust_remote_code: waits for a worker started with --allow-remote-code ({job.queue}); "
        "no live worker allows it"
    )


def waiting_reasons(jobs: list[Job], workers: list[Worker]) -> dict[str, str]:
    """Queued jobs that no live worker can hold, with the reason."""
    classes = live_classes(workers)
    reasons = {}
    for job in jobs:
        if job.state != JobState.queued or (job.queue is None and job.vram_mb is None):
            continue
        reason = unroutable_reason(job.queue, job.vram_mb, classes) or _remote_code_reason(job, workers)
        if reason:
            reasons[job.id] = reason
    return reasons
