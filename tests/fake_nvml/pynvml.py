"""A stand-in for NVIDIA's `pynvml` (nvidia-ml-py) that reads its readings from a JSON file: the one GPU mock.

Put this directory first on a worker's PYTHONPATH and point FAKE_NVML_FILE at a file such as
{"utilization_pct": 97, "pids": [1234567], "total_mb": 81559, "used_mb": 2000}. Everything that
reads NVML (workers.gpu.probe_gpus, workers.yield_policy.nvml_probe, `workers check`) then runs its
real code on these readings. The PIDs are written as the driver reports them: in a container, host
PIDs that mean nothing in the worker's own PID namespace. Without the file, nvmlInit fails as on a
machine without a driver.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


def _reading() -> dict[str, Any]:
    path = os.environ.get("FAKE_NVML_FILE")
    if not path or not Path(path).exists():
        raise NVMLError("NVML Shared Library Not Found (fake: FAKE_NVML_FILE unset or missing)")
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except ValueError:  # a file caught half-written: read it as the last one
        return dict(_last)


_last: dict[str, Any] = {}


def nvmlInit() -> None:
    _last.update(_reading())


def nvmlShutdown() -> None:
    pass


def nvmlSystemGetDriverVersion() -> str:
    return str(_reading().get("driver", "580.00-fake"))


def nvmlDeviceGetCount() -> int:
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    return index


def nvmlDeviceGetName(handle: int) -> str:
    return str(_reading().get("name", "Fake NVIDIA H100 80GB HBM3"))


def nvmlDeviceGetMemoryInfo(handle: int) -> SimpleNamespace:
    data = _reading()
    total, used = int(data.get("total_mb", 81559)) * 2**20, int(data.get("used_mb", 0)) * 2**20
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetUtilizationRates(handle: int) -> SimpleNamespace:
    return SimpleNamespace(gpu=float(_reading().get("utilization_pct", 0)), memory=0)


def nvmlDeviceGetComputeRunningProcesses(handle: int) -> list[SimpleNamespace]:
    data = _reading()
    _last.clear()
    _last.update(data)
    return [SimpleNamespace(pid=int(pid), usedGpuMemory=None) for pid in data.get("pids", [])]


def nvmlDeviceGetGraphicsRunningProcesses(handle: int) -> list[SimpleNamespace]:
    return []
