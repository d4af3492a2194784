"""GPU probing through NVML, which never initialises CUDA (a CUDA context in the
Celery parent would break every forked child)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuInfo:
    name: str
    total_mb: int
    free_mb: int
    driver: str


def probe_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs of this machine; empty on CPU-only machines or without a driver."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        count = pynvml.nvmlDeviceGetCount()
        return [_describe(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i), driver) for i in range(count)]
    finally:
        pynvml.nvmlShutdown()


def _describe(pynvml, handle, driver: str) -> GpuInfo:  # type: ignore[no-untyped-def]
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return GpuInfo(
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        total_mb=int(memory.total // 2**20),
        free_mb=int(memory.free // 2**20),
        driver=driver,
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- whose GPU processes are ours

# How the worker tells its own GPU processes from the owner's, logged once when it is decided.
IDENTITY_PID = "pid"  # NVML's PIDs are this namespace's: ours are the worker's own process tree
IDENTITY_APPEARED = "appeared"  # NVML's PIDs are another namespace's: ours are those that appeared with our job


@dataclass
class ProcessIdentity:
    """Which of the GPU processes NVML lists are this worker's, in any PID namespace.

    The NVIDIA driver does not translate PIDs into a container's PID namespace (NVIDIA/nvidia-docker#1483):
    inside a container without `pid: host`, NVML lists host PIDs, never the worker's. So the identity is
    learned, not assumed. While none of our jobs runs, every GPU process is someone else's (the Celery
    parent never initialises CUDA, pool children only do inside a job), save one of ours still exiting,
    and those PIDs are remembered as the baseline. Once a job runs: when NVML lists a PID of our process
    tree, PIDs are comparable (`pid`); otherwise the GPU processes that appear after our job started and
    were not in the baseline are ours, at most one per running job, the lowest PIDs when more appear in
    one reading (`appeared`). A process that appears later, while our job's context already holds its
    place, is foreign: the owner's game.
    """

    mechanism: str | None = None  # IDENTITY_PID or IDENTITY_APPEARED once seen
    baseline: frozenset[int] = frozenset()
    claimed: set[int] = field(default_factory=set)
    on_decided: Callable[[str, str], None] | None = None  # (mechanism, why): for the worker's log

    def ours(self, nvml_pids: set[int], own_pids: set[int], jobs_running: int) -> set[int]:
        """The PIDs among `nvml_pids` that belong to this worker (its running jobs, or a job's process that
        is still exiting: Celery counts a job done before its child has let go of the GPU)."""
        matching = nvml_pids & own_pids
        if matching:
            self._decide(IDENTITY_PID, "NVML lists a PID of this worker's process tree")
            self.claimed = set()
            return matching
        self.claimed &= nvml_pids  # a claimed process that exited is no longer ours
        if jobs_running <= 0:
            self.baseline = frozenset(nvml_pids - self.claimed)
            return set(self.claimed)
        if self.mechanism == IDENTITY_PID:
            return set()  # our job has not created its CUDA context yet: whatever is listed is someone else's
        room = jobs_running - len(self.claimed)
        appeared = sorted(nvml_pids - self.baseline - self.claimed)
        if appeared and room > 0:
            self.claimed |= set(appeared[:room])
            self._decide(
                IDENTITY_APPEARED,
                f"NVML lists no PID of this worker (another PID namespace, e.g. a container without pid: host); "
                f"the GPU process(es) {sorted(self.claimed)} appeared after our job started",
            )
        return set(self.claimed)

    def _decide(self, mechanism: str, why: str) -> None:
        if mechanism != self.mechanism:
            self.mechanism = mechanism
            if self.on_decided:
                self.on_decided(mechanism, why)
