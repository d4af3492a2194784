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


def workers_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} worker(s)", title_justify="left")
    for header in ("worker", "host", "state", "gpu", "vram (free/total MB)", "class", "last beat", "version"):
        table.add_column(header)
    styles = {"idle": "green", "busy": "yellow", "paused": "magenta", "gone": "red", "stopped": "dim"}
    for r in rows:
        table.add_row(
            r["name"], r["host"], f"[{styles.get(r['state'], '')}]{r['doing']}[/]", r["gpu"],
            f"{r['vram_free_mb']}/{r['vram_total_mb']}", r["class"], f"{r['heartbeat_age_s']:.0f} s ago", r["version"],
        )
    return table


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
