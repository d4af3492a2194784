"""`orchestrator workers` and the routing notes of `orchestrator status`."""

from __future__ import annotations

import os
from datetime import datetime

from rich.table import Table

from db import fleet
from db.models import Job, Worker
from db.states import JobState, now
from jobs.resources.placement import class_gb, unroutable_reason

# A worker heart-beats every few seconds; this long without one and it is shown as gone.
GONE_AFTER_S = float(os.environ.get("REASONFLEET_GONE_AFTER_S", "30"))


def worker_rows(workers: list[Worker], *, at: datetime | None = None) -> list[dict]:
    at = at or now()
    rows = []
    for w in workers:
        state = fleet.display_state(w, gone_after_s=GONE_AFTER_S, at=at)
        doing = {"busy": f"busy on job {w.current_job}", "paused": f"paused: {w.pause_reason or ''}"}.get(state, state)
        rows.append({
            "name": w.name, "host": w.host, "state": state, "doing": doing,
            "gpu": w.gpu_name or "CPU only", "vram_total_mb": w.vram_total_mb, "vram_free_mb": w.vram_free_mb,
            "driver": w.driver or "", "class": w.memory_class, "queues": w.queues, "version": w.version,
            "started_at": w.started_at.isoformat(), "heartbeat_age_s": round((at - fleet.crud._aware(w.heartbeat_at)).total_seconds(), 1),
        })
    return rows


def workers_table(rows: list[dict]) -> Table:
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
    alive = [w for w in workers if fleet.display_state(w, gone_after_s=GONE_AFTER_S) not in (fleet.GONE, fleet.STOPPED)]
    return [class_gb(w.memory_class) for w in alive]


def waiting_reasons(jobs: list[Job], workers: list[Worker]) -> dict[str, str]:
    """Queued jobs that no live worker can hold, with the reason."""
    classes = live_classes(workers)
    reasons = {}
    for job in jobs:
        if job.state != JobState.queued or (job.queue is None and job.vram_mb is None):
            continue
        reason = unroutable_reason(job.queue, job.vram_mb, classes)
        if reason:
            reasons[job.id] = reason
    return reasons
