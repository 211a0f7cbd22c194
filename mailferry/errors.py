"""The one error hierarchy of mailferry: two trees under ``MailferryError``.

- **Verdicts** on one message or one attempt: ``TransientError`` (try again later) and
  ``PermanentError`` (trying again cannot help: dead-letter it with the reason).
- **Operator errors** (``OperatorError``): the configuration, the machine or the credentials
  are wrong, which says nothing about any message. The one rule in every role: what it
  concerns is paused (a source mailbox in fetch, a tenant in deliver), the pause is reported
  (audit ``paused`` event, status, log) and checked again on a timer; mail waits, it is never
  dead-lettered for it.

Every place that retries, dead-letters or pauses decides by the *type* of the error it
caught, never by matching text. Each boundary translates its library's errors into these
classes once, in one mapper (as httpx maps httpcore's): POP3/IMAP ``producers/access.classify``,
Kafka ``mailferry.kafka.errors``, EWS ``mailferry.exchange.ews.errors``, Graph
``mailferry.exchange.graph.errors``, SMTP ``consumers/targets/smtp.classify``, Maildir
``consumers/targets/maildir._classify``, S3 ``mailferry.blobs.s3._s3_errors``
(``tests/foundation/test_error_boundaries.py``).
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


class OperatorError(MailferryError):
    """The configuration, the machine or the credentials are wrong: a person must act.

    Never a verdict on a message: the role pauses what the error concerns, reports it and
    checks again later (module docstring). Not a ``PermanentError``, so no dead-letter path
    can take it for one.
    """

    reason_code = "operator"


class ConfigError(OperatorError):
    """A configuration that cannot be used; the message names file, line and field."""

    reason_code = "config"

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SetupError(OperatorError):
    """The machine lacks something mailferry needs (Java, Maven, a free port, the test kit)."""

    reason_code = "setup"


class TenantError(OperatorError):
    """A server refuses a whole tenant or source mailbox: bad credentials, impersonation denied,
    an untrusted certificate. Retrying each message, or dead-lettering each one, would flood the
    server (and lock the account) and the dead-letter topic: pause and alert instead.
    """

    reason_code = "tenant"

    def __init__(self, message: str, *, tenant: str | None = None, reason_code: str | None = None) -> None:
        super().__init__(message, reason_code=reason_code)
        self.tenant = tenant


class CredentialsError(TenantError):
    """The server refused the login or the token request; the same rule in fetch and deliver."""

    reason_code = "bad-credentials"


class NotFoundError(PermanentError):
    """What a command was asked about does not exist (a dead letter id, a mailbox); exit code 1
    in every command, unlike a usage error (2)."""

    reason_code = "not-found"


class MalformedMessageError(PermanentError):
    """Mail that cannot be parsed or routed; it is dead-lettered with this reason."""

    reason_code = "malformed-message"
