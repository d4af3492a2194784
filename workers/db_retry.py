"""Database writes that outlive a flaky home network: retried with exponential back-off, never dropped.

A job's result is computed once (minutes of GPU time); losing it to a 30-second database
outage would be the worst trade. Only connection-level errors are retried: a constraint
violation or a bug fails at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from db.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    first_line = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:200] if error else ""
    log.warning("database unreachable (attempt %d, retrying): %s", state.attempt_number, first_line)


def with_db_retry(fn: Callable[[], T], *, retry_for_s: float | None = None) -> T:
    """Call `fn` (one whole transaction) until it succeeds or `retry_for_s` (REASONFLEET_DB_RETRY_S) has passed."""
    budget = retry_for_s if retry_for_s is not None else get_settings().db_retry_s
    retrying = retry(
        retry=retry_if_exception(_is_connection_error),
        wait=wait_exponential(multiplier=0.5, max=15),
        stop=stop_after_delay(budget),
        before_sleep=_log_retry,
        reraise=True,
    )
    return retrying(fn)()
