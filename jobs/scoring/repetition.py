"""A simple repetition-loop detector on generated token ids.

A row is in a loop when, for some period p in 1..MAX_PERIOD, a stretch of at least
max(MIN_RUN, LOOP_REPEATS * p) consecutive tokens equals itself shifted by p: the same
p-token block written LOOP_REPEATS+1 times back to back (e.g. one sentence four times,
or one token 33 times). Ordinary arithmetic reasoning repeats phrases, not whole
blocks back to back, so it stays below this.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_PERIOD = 64
MIN_RUN = 32
LOOP_REPEATS = 3


def has_repetition_loop(ids: Sequence[int]) -> bool:
    """True when `ids` contains a block repeated back to back (see the module doc)."""
    tokens = np.asarray(ids, dtype=np.int64)
    for period in range(1, min(MAX_PERIOD, len(tokens) // 2) + 1):
        if _longest_true_run(tokens[:-period] == tokens[period:]) >= max(MIN_RUN, LOOP_REPEATS * period):
            return True
    return False


def _longest_true_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    # Run boundaries are where the padded mask flips; a run's length is end - start.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return int((edges[1::2] - edges[::2]).max())
