"""The one table that turns exchangelib's errors into mailferry's retry decisions (EWS).

exchangelib rarely raises the error that caused a failure: a read timeout becomes
``ErrorTimeoutExpired`` (and, with more than one session, ``ErrorServerBusy``), an HTTP 503
becomes ``ErrorInternalServerTransientError`` wrapped in ``ErrorServerBusy``. So the chain of
exceptions is walked from the innermost cause outwards and the first one the table knows
decides. A timeout on a *write* (CreateItem) is ambiguous: the item may exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests.exceptions
from exchangelib import errors as ews
from oauthlib.oauth2.rfc6749 import errors as oauth  # type: ignore[import-untyped]
from urllib3.exceptions import MaxRetryError, NewConnectionError

from mailferry.errors import (
    AmbiguousOutcomeError,
    CredentialsError,
    MailferryError,
    PermanentError,
    TenantError,
    TransientError,
)


@dataclass(frozen=True)
class Rule:
    outcome: type[MailferryError]  # AmbiguousOutcomeError: ambiguous for writes, transient for reads
    reason: str
    text: str


_TIMEOUT_AFTER_SEND = Rule(
    AmbiguousOutcomeError, "timeout-after-send", "no answer after the request was sent"
)

# First match wins within one exception; order subclasses before their bases.
TABLE: tuple[tuple[type[BaseException], Rule], ...] = (
    # operator errors (mailferry.errors): pause the tenant, do not retry or dead-letter each message
    (ews.UnauthorizedError, Rule(CredentialsError, "bad-credentials", "the service account cannot log in")),
    (oauth.InvalidClientError, Rule(CredentialsError, "bad-credentials", "client id or secret refused")),
    (oauth.UnauthorizedClientError, Rule(CredentialsError, "bad-credentials", "the app may not get tokens")),
    (oauth.TokenExpiredError, Rule(TransientError, "token-expired", "the access token expired mid-request")),
    (oauth.OAuth2Error, Rule(TenantError, "oauth-refused", "the token endpoint refused the app")),
    (
        ews.ErrorImpersonateUserDenied,
        Rule(TenantError, "impersonation-denied", "impersonation is not allowed"),
    ),
    (ews.ErrorImpersonationDenied, Rule(TenantError, "impersonation-denied", "impersonation is not allowed")),
    (ews.ErrorImpersonationFailed, Rule(TenantError, "impersonation-denied", "impersonation failed")),
    (
        ews.ErrorInvalidServerVersion,
        Rule(TenantError, "version-mismatch", "the configured EWS version is wrong"),
    ),
    (
        ews.ErrorInvalidSchemaVersionForMailboxVersion,
        Rule(TenantError, "version-mismatch", "the configured EWS version is wrong"),
    ),
    (requests.exceptions.SSLError, Rule(TenantError, "tls", "the EWS endpoint's TLS certificate is refused")),
    # permanent: dead-letter this message with the reason
    (ews.ErrorNonExistentMailbox, Rule(PermanentError, "no-such-mailbox", "the mailbox does not exist")),
    (ews.ErrorMailRecipientNotFound, Rule(PermanentError, "no-such-mailbox", "the mailbox does not exist")),
    (
        ews.ErrorMessageSizeExceeded,
        Rule(PermanentError, "size-exceeded", "the message is over the size limit"),
    ),
    (
        ews.ErrorMimeContentConversionFailed,
        Rule(PermanentError, "mime-conversion-failed", "Exchange cannot convert this MIME message"),
    ),
    (
        ews.ErrorAccessDenied,
        Rule(PermanentError, "access-denied", "the account may not write to this mailbox"),
    ),
    (ews.ErrorSchemaValidation, Rule(PermanentError, "request-refused", "Exchange refused the request")),
    # transient: next retry tier (with the server's back-off hint when it gave one)
    (ews.ErrorServerBusy, Rule(TransientError, "server-busy", "Exchange is busy (throttled)")),
    (ews.ErrorTooManyObjectsOpened, Rule(TransientError, "throttled", "too many objects open on the server")),
    (
        ews.ErrorExceededConnectionCount,
        Rule(TransientError, "throttled", "too many connections to the server"),
    ),
    (
        ews.ErrorMailboxStoreUnavailable,
        Rule(TransientError, "store-unavailable", "the mailbox store is down"),
    ),
    (ews.ErrorMailboxMoveInProgress, Rule(TransientError, "store-unavailable", "the mailbox is being moved")),
    (ews.ErrorQuotaExceeded, Rule(TransientError, "mailbox-full", "the mailbox is over its quota")),
    (
        ews.ErrorInternalServerTransientError,
        Rule(TransientError, "server-unavailable", "Exchange is unavailable"),
    ),
    (ews.ErrorInternalServerError, Rule(TransientError, "server-error", "Exchange had an internal error")),
    (ews.ErrorTimeoutExpired, Rule(TransientError, "timeout", "Exchange timed out")),
    (requests.exceptions.ConnectTimeout, Rule(TransientError, "connect-failed", "cannot connect to EWS")),
    (requests.exceptions.ReadTimeout, _TIMEOUT_AFTER_SEND),
    (requests.exceptions.ChunkedEncodingError, _TIMEOUT_AFTER_SEND),
    (requests.exceptions.ConnectionError, _TIMEOUT_AFTER_SEND),  # refined by _never_sent
    (ConnectionResetError, _TIMEOUT_AFTER_SEND),
    (TimeoutError, _TIMEOUT_AFTER_SEND),
    (ews.MalformedResponseError, Rule(TransientError, "bad-response", "EWS answered something unreadable")),
    (ews.ResponseMessageError, Rule(TransientError, "unclassified", "unexpected EWS error")),
    (ews.TransportError, Rule(TransientError, "transport", "EWS transport failure")),
)
_UNKNOWN = Rule(TransientError, "unclassified", "unexpected EWS error")
# Not from EWS at all (a bug here or in exchangelib): dead-letter it where a person sees it,
# rather than retrying something that cannot get better for three days.
_INTERNAL = Rule(PermanentError, "internal-error", "mailferry could not build the EWS request")
_CONNECT_FAILED = Rule(TransientError, "connect-failed", "cannot connect to EWS")


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _never_sent(exc: BaseException) -> bool:
    """A refused connection: the request never left, so nothing can have happened."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and exc.args:
        inner = exc.args[0]
        return isinstance(inner, MaxRetryError) and isinstance(inner.reason, NewConnectionError)
    return False


def rule_for(exc: BaseException) -> tuple[Rule, BaseException]:
    for cause in reversed(chain(exc)):
        for kind, rule in TABLE:
            if isinstance(cause, kind):
                if rule is _TIMEOUT_AFTER_SEND and _never_sent(cause):
                    return _CONNECT_FAILED, cause
                return rule, cause
    if any(isinstance(c, ews.EWSError | OSError) for c in chain(exc)):
        return _UNKNOWN, exc
    return _INTERNAL, exc


def back_off(exc: BaseException) -> float | None:
    """The server's BackOffMilliseconds (in seconds) when any ErrorServerBusy carried one."""
    for cause in chain(exc):
        value = getattr(cause, "back_off", None) if isinstance(cause, ews.ErrorServerBusy) else None
        if value:
            return float(value)
    return None


def classify(exc: BaseException, *, write: bool, tenant: str | None = None) -> MailferryError:
    """The mailferry error for an exchangelib failure; ``write`` marks a CreateItem."""
    if isinstance(exc, MailferryError):
        return exc
    rule, cause = rule_for(exc)
    detail = f"{rule.text} ({type(cause).__name__}: {str(cause)[:300]})"
    if issubclass(rule.outcome, TenantError):  # CredentialsError too
        return rule.outcome(detail, tenant=tenant, reason_code=rule.reason)
    if rule.outcome is PermanentError:
        return PermanentError(detail, reason_code=rule.reason)
    if rule.outcome is AmbiguousOutcomeError and write:
        return AmbiguousOutcomeError(detail, reason_code=rule.reason)
    reason = "timeout" if rule.outcome is AmbiguousOutcomeError else rule.reason
    return TransientError(detail, reason_code=reason, retry_after=back_off(exc))
