"""Yield to the owner: when the PC's owner uses the GPU (a game), stop taking jobs; resume when idle.

The policy is a small state machine fed by a GPU probe, so it can be tested with an
injected probe: the real NVML path needs an NVIDIA driver, which this machine lacks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# The window type and its parser live with the settings (REASONFLEET_HOURS); re-exported here, where they are used.
from db.settings import Hours as Hours
from db.settings import default_of
from db.settings import parse_hours as parse_hours
from workers.gpu import ProcessIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuSample:
    utilization_pct: float = 0.0
    foreign_processes: tuple[str, ...] = ()  # GPU processes that are not this worker's


GpuProbe = Callable[[], GpuSample]


@dataclass(frozen=True)
class YieldConfig:
    # The owner's utilisation above this means "in use" (REASONFLEET_BUSY_UTILIZATION).
    busy_utilization_pct: float = default_of("busy_utilization")
    # The GPU must be idle this long before jobs are taken again (REASONFLEET_IDLE_RESUME_S).
    idle_resume_s: float = default_of("idle_resume_s")
    hours: Hours | None = None  # only take jobs inside this window (local time)


@dataclass(frozen=True)
class Decision:
    take_jobs: bool
    reason: str | None  # why not, for the registry and `orchestrator workers`


@dataclass
class YieldPolicy:
    """Feed it one probe sample per tick; it says whether the worker should take jobs."""

    config: YieldConfig = field(default_factory=YieldConfig)
    paused_reason: str | None = None
    idle_since: datetime | None = None

    def decide(self, sample: GpuSample, at: datetime) -> Decision:
        busy = self._owner_activity(sample)
        if self.config.hours and not self.config.hours.contains(at.time()):
            start, end = self.config.hours.start, self.config.hours.end
            self.paused_reason = f"outside working hours {start:%H:%M}-{end:%H:%M}"
            self.idle_since = None if busy else self.idle_since
            return Decision(False, self.paused_reason)
        if busy:
            self.paused_reason, self.idle_since = busy, None
            return Decision(False, busy)
        if self.paused_reason is None:
            return Decision(True, None)
        self.idle_since = self.idle_since or at
        idle_for = (at - self.idle_since).total_seconds()
        if idle_for >= self.config.idle_resume_s or self.paused_reason.startswith("outside working hours"):
            self.paused_reason, self.idle_since = None, None
            return Decision(True, None)
        return Decision(False, f"{self.paused_reason} (idle {idle_for:.0f}/{self.config.idle_resume_s:.0f} s)")

    def _owner_activity(self, sample: GpuSample) -> str | None:
        if sample.foreign_processes:
            return f"GPU in use by {', '.join(sample.foreign_processes[:3])}"
        if sample.utilization_pct > self.config.busy_utilization_pct:
            return f"GPU utilisation {sample.utilization_pct:.0f}% > {self.config.busy_utilization_pct:.0f}%"
        return None


# --------------------------------------------------------------------------- probes


def file_probe(path: Path) -> GpuProbe:
    """Reads {"utilization_pct": 95, "foreign_processes": ["game.exe"]} from a file.

    For tests and for owners who want a manual switch (write the file from a game launcher);
    a missing or unreadable file reads as an idle GPU.
    """

    def probe() -> GpuSample:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return GpuSample()
        return GpuSample(float(data.get("utilization_pct", 0.0)), tuple(data.get("foreign_processes", ())))

    return probe


def nvml_probe(own_pids: Callable[[], set[int]], jobs_running: Callable[[], int]) -> GpuProbe | None:
    """The real probe: GPU 0's utilisation and the GPU processes that are not ours. None without a driver.

    `own_pids` is the worker's process tree, `jobs_running` how many jobs it runs now: together they tell
    our GPU processes from the owner's in any PID namespace (workers.gpu.ProcessIdentity).
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # noqa: BLE001  (no library, no driver, no GPU: no probe)
        return None

    def read() -> tuple[float, set[int]]:
        utilization = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
        processes = [
            *pynvml.nvmlDeviceGetComputeRunningProcesses(handle), *pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle)
        ]
        return float(utilization), {int(p.pid) for p in processes}

    return identified_probe(read, own_pids, jobs_running)


def identified_probe(
    read: Callable[[], tuple[float, set[int]]], own_pids: Callable[[], set[int]], jobs_running: Callable[[], int]
) -> GpuProbe:
    """A probe over raw NVML readings (utilisation %, GPU process PIDs) that knows which processes are ours."""
    identity = ProcessIdentity(on_decided=_log_identity)

    def probe() -> GpuSample:
        utilization, pids = read()
        ours = identity.ours(pids, own_pids(), jobs_running())
        foreign = tuple(sorted({_process_name(pid) for pid in pids - ours}))
        # While our own job runs, the utilisation is ours: only foreign processes mean the owner is back.
        return GpuSample(0.0 if ours and not foreign else utilization, foreign)

    return probe


def _log_identity(mechanism: str, why: str) -> None:
    log.warning("GPU process identity: %s (%s)", mechanism, why)


def _process_name(pid: int) -> str:
    try:
        import psutil

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001
        return f"pid {pid}"


def probe_for(choice: str, own_pids: Callable[[], set[int]], jobs_running: Callable[[], int]) -> GpuProbe | None:
    """The probe REASONFLEET_GPU_PROBE names (`settings.gpu_probe`, validated there): `file:/path` reads a file,
    `none` has no probe, `nvml` reads NVML when a driver is present."""
    if choice.startswith("file:"):
        return file_probe(Path(choice.removeprefix("file:")))
    if choice == "none":
        return None
    return nvml_probe(own_pids, jobs_running)
