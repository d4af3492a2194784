"""GPU probing through NVML, which never initialises CUDA (a CUDA context in the
Celery parent would break every forked child)."""

from __future__ import annotations

from dataclasses import dataclass


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
