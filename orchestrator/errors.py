"""Errors the orchestrator raises; each becomes one clear line and an exit code in the CLI."""

from jobs.errors import ReasonFleetError, ServiceUnavailable

__all__ = ["NotFound", "ServiceUnavailable", "SweepError", "UsageError"]


class SweepError(ReasonFleetError):
    """The sweep file is malformed or asks for something impossible; nothing was written."""

    exit_code = 2


class NotFound(ReasonFleetError):
    """A sweep or job the user named does not exist."""

    exit_code = 4


class UsageError(ReasonFleetError):
    """A command was called without what it needs (a setting, an option); nothing was done."""

    exit_code = 2
