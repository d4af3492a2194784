"""The one error hierarchy, shared by every layer: what the CLIs print as one line, what a worker retries or fails.

Each class says what kind of trouble it is; its `exit_code` is what both CLIs exit with
(through `one_line_errors`, below): bad input 2, unreachable or outdated service 3, a named
thing that does not exist 4, anything else of ours 1. A user-facing condition raises one of
these, never a built-in exception. Standard library only: every layer imports this module.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import TracebackType


class ReasonFleetError(Exception):
    """Base of every error we raise on purpose; the CLIs print it as one line, no traceback."""

    exit_code = 1


# --------------------------------------------------------------------------- bad input: exit 2


class InputError(ReasonFleetError):
    """Something the user gave is wrong; the message names the field, option or variable. Nothing was written."""

    exit_code = 2


class SweepError(InputError):
    """The sweep file is malformed or asks for something impossible; nothing was written."""


class UsageError(InputError):
    """A command was called without what it needs (a setting, an option); nothing was done."""


class SettingsError(InputError):
    """A REASONFLEET_* variable (or the option that sets it) is invalid; the message names it."""


class InsecureBrokerTLS(SettingsError):
    """A rediss:// broker URL that turns certificate checks off without REASONFLEET_ALLOW_INSECURE_TLS=1."""


class NotFound(ReasonFleetError):
    """A sweep or job the user named does not exist."""

    exit_code = 4


# --------------------------------------------------------------------------- services: exit 3


class ServiceUnavailable(ReasonFleetError):
    """Redis or the database could not be reached; the message names the (masked) URL."""

    exit_code = 3


class SchemaOutOfDate(ServiceUnavailable):
    """The database's schema is older than this code: run `orchestrator db upgrade`."""


# --------------------------------------------------------------------------- jobs


class FatalJobError(ReasonFleetError):
    """The job cannot succeed as specified (bad spec, OOM at the smallest batch): fail it now."""


class RetryableError(ReasonFleetError):
    """A passing condition (preemption, broker or network trouble): try the job again later."""


class SweepFailed(ReasonFleetError):
    """`orchestrator submit` ran the sweep and at least one job failed; the message names which (exit 1)."""


class JobCancelled(ReasonFleetError):
    """The job was cancelled while it ran; stop quietly and write nothing."""


class IllegalTransition(ReasonFleetError):
    """A job state change the state machine does not allow: a bug, never a user's mistake."""


# --------------------------------------------------------------------------- the CLIs' wrapper


class one_line_errors(contextlib.ContextDecorator):  # lower case, like contextlib.suppress: it reads as a verb
    """Both CLIs' commands run inside this: our error becomes `error: <message>` on stderr and its exit code.

    A decorator (`@one_line_errors()`) or a context manager. No traceback for what the user can
    fix; anything else (a bug) still raises with its traceback.
    """

    def __enter__(self) -> one_line_errors:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if isinstance(error, ReasonFleetError):
            stream = sys.stderr  # looked up now: test runners swap it
            label = "\x1b[31merror:\x1b[0m" if stream.isatty() and "NO_COLOR" not in os.environ else "error:"
            stream.write(f"{label} {error}\n")
            stream.flush()
            raise SystemExit(error.exit_code) from None
