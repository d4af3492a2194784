"""Adaptive batch size: a batch that runs out of CUDA memory is retried as two halves.

The size found to fit is kept for the rest of the job (memory use grows with the
longest prompts, which come first). At batch size 1 the error is fatal: the job cannot
run on this device at all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from jobs.errors import FatalJobError

# Test-only hook, called with the batch about to run: tests set it to raise
# torch.cuda.OutOfMemoryError at the batch boundary, since CPU runs never run out of
# CUDA memory. None in production.
before_batch: Callable[[list[int]], None] | None = None


def run_batches(
    order: list[int],
    batch_size: int,
    run: Callable[[int, list[int]], None],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Call `run(start, order[start:start+size])` over all of `order`; the final batch size.

    On torch.cuda.OutOfMemoryError the batch is retried at half the size.
    """
    size, start = max(1, batch_size), 0
    while start < len(order):
        rows = order[start : start + size]
        try:
            if before_batch is not None:
                before_batch(rows)
            run(start, rows)
        except torch.cuda.OutOfMemoryError as error:
            if size == 1:
                raise FatalJobError(f"out of memory at batch size 1: {error}") from None
            size = max(1, size // 2)
            free_cuda()
            continue
        start += len(rows)
        if progress is not None:
            progress(start, len(order))
    return size


def free_cuda() -> None:
    """Hand cached CUDA blocks back before a retry at a smaller size."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
