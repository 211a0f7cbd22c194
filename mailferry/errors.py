"""The one error hierarchy of mailferry.

Every place that retries, dead-letters or pauses decides by the *type* of the error it
caught, never by matching text. Targets, fetchers and the stream app translate the errors
of the libraries they call into these classes once, at the edge, in one table each.
"""

from __future__ import annotations


class MailferryError(Exception):
    """Root of every error mailferry raises on purpose.

    ``reason_code`` is a short, stable, machine-readable word (``server-busy``,
    ``no-such-mailbox``) that lands in audit events and dead-letter records; the message
    is for a person.
    """

    reason_code: str = "error"

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class TransientError(MailferryError):
    """Worth trying again later: busy, throttled, unavailable, timed out.

    ``retry_after`` is the server's own back-off hint in seconds, when it gave one
    (EWS ``BackOffMilliseconds``, HTTP ``Retry-After``); retry policies take the larger
    of it and their own schedule.
    """

    reason_code = "transient"

    def __init__(
        self,
        message: str,
        *,
        reason_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, reason_code=reason_code)
        self.retry_after = retry_after


class AmbiguousOutcomeError(TransientError):
    """The request may have taken effect (a timeout after sending).

    Before writing again, the caller must check the target for what it already holds;
    this is what keeps at-least-once processing from becoming double delivery.
    """

    reason_code = "ambiguous-outcome"


class PermanentError(MailferryError):
    """Trying again cannot help: no such mailbox, message refused, malformed input.

    The item goes to the dead-letter topic with this reason.
    """

    reason_code = "permanent"


class TenantError(PermanentError):
    """Wrong for every message of a tenant: bad credentials, impersonation denied.

    Retrying each message, or dead-lettering each one, would flood both the server and
    the dead-letter topic; the right reaction is to pause the tenant and alert.
    """

    reason_code = "tenant"

    def __init__(self, message: str, *, tenant: str | None = None, reason_code: str | None = None) -> None:
        super().__init__(message, reason_code=reason_code)
        self.tenant = tenant


class ConfigError(PermanentError):
    """A configuration that cannot be used; the message names file, line and field."""

    reason_code = "config"

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SetupError(PermanentError):
    """The machine lacks something mailferry needs (Java, Maven, a free port)."""

    reason_code = "setup"


class NotFoundError(PermanentError):
    """What a command was asked about does not exist (a dead letter id, a mailbox); exit code 1
    in every command, unlike a usage error (2)."""

    reason_code = "not-found"


class MalformedMessageError(PermanentError):
    """Mail that cannot be parsed or routed; it is dead-lettered with this reason."""

    reason_code = "malformed-message"
