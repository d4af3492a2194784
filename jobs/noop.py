"""The no-op job: exercises the whole queue path (claim, heartbeat, state writes) without ML.

Used by the queue-overhead benchmark and the fleet tests; registered like any other kind,
so its spec is validated like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jobs.specs import NoopJobSpec


def run(spec: NoopJobSpec, progress: Callable[[int, int], None]) -> None:
    if spec.sleep_s == 0:
        return  # nothing to report progress on: the claim and success writes are the whole path
    steps = max(1, int(spec.sleep_s / 0.25))
    for step in range(steps):
        if spec.sleep_s:
            time.sleep(spec.sleep_s / steps)
        progress(step + 1, steps)
