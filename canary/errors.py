"""The one exception tree of canary.

Every failure the controller can meet is one of these, so the CLI maps errors to exit
codes in one place and nothing above an adapter ever catches a library's exception::

    CanaryError
    ├── InputError          bad file, field, argument (exit 2, never retried)
    ├── TemporaryError      may succeed later; carries a retry delay
    │   ├── RouterError     the router refused or could not be reached
    │   ├── MetricsError    Prometheus unreachable, timed out or answered an error
    │   └── NotifyError     Slack / webhook delivery failed
    ├── ConflictError       compare-and-set lost, lease held by someone else
    └── NotFoundError       no such rollout

Adapters translate third-party exceptions with ``raise ... from exc``.
"""

from __future__ import annotations

from canary.secrets import redact_known


def _masked(text: str) -> str:
    return redact_known(text)


class CanaryError(Exception):
    """Base of every error canary raises on purpose.

    Its text is masked when it is made: every value a rollout file took from ``${VAR}``
    becomes ``***``, so no adapter's message (a router's command line, a server's echo)
    carries a secret into a state, an event, an alert or the terminal.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(_masked(a) if isinstance(a, str) else a for a in args))


class InputError(CanaryError):
    """Invalid input: where it is (file, line, field) and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = _masked(message)
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class TemporaryError(CanaryError):
    """A failure that may go away; ``retry_after`` is the suggested delay in seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class RouterError(TemporaryError):
    """The router refused a change or could not be reached."""


class MetricsError(TemporaryError):
    """The metrics source could not answer (unreachable, timeout, bad response)."""


class ControllerBusy(MetricsError):
    """The controller itself could not ask in time (all its query slots busy, its own
    budget spent waiting): says nothing about the canary, so the check is inconclusive,
    never an error that counts toward a rollback."""


class NotifyError(TemporaryError):
    """A notification could not be delivered."""


class ConflictError(CanaryError):
    """Someone else changed the state first, or holds the lease."""


class NotFoundError(CanaryError):
    """The named rollout (or other object) does not exist."""
