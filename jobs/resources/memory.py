"""Peak memory of a piece of work: CUDA peak allocation on a GPU, else the process's peak RSS."""

from __future__ import annotations

import resource
import sys
from types import TracebackType

import torch


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux and bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class MemoryTracker:
    """`with MemoryTracker(device) as mem: ...` then `mem.peak_mb`, `mem.kind` ("cuda" or "rss").

    On CUDA the peak counter is reset on entry, so the number belongs to the block.
    RSS cannot be reset: it is the process's peak so far, model loading included, an
    upper bound on what the block needed.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.kind = "cuda" if self.device.type == "cuda" else "rss"
        self.peak_mb = 0.0

    def __enter__(self) -> MemoryTracker:
        if self.kind == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.peak_mb = self.read()

    def read(self) -> float:
        """Peak so far in MiB."""
        if self.kind == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _peak_rss_mb()


def peak_memory(device: str | torch.device = "cpu") -> tuple[float, str]:
    """(peak_mb, kind) now, without a reset: CUDA peak allocated since the last reset, or peak RSS."""
    tracker = MemoryTracker(device)
    return tracker.read(), tracker.kind
