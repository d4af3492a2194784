"""The error hierarchy: what the CLI shows as one line, and what a worker retries or fails."""


class ReasonFleetError(Exception):
    """Base of every error we raise on purpose; the CLI prints it as one line, no traceback."""

    exit_code = 1


class FatalJobError(ReasonFleetError):
    """The job cannot succeed as specified (bad spec, OOM at the smallest batch): fail it now."""


class RetryableError(ReasonFleetError):
    """A passing condition (preemption, broker or network trouble): try the job again later."""


class JobCancelled(ReasonFleetError):
    """The job was cancelled while it ran; stop quietly and write nothing."""


class ServiceUnavailable(ReasonFleetError):
    """Redis or the database could not be reached; the message names the (masked) URL."""

    exit_code = 3
