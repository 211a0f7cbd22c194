"""The one table that turns Microsoft Graph failures into mailferry's retry decisions.

A Graph failure is an HTTP status with an error code in the JSON body, a token-endpoint
refusal, or a transport exception from httpx. The table is looked up by the most specific
key first: Graph error code, then HTTP status (exact, then its class), then exception type.
A read timeout or a dropped connection on a *write* is ambiguous: the message may exist.
"""

from __future__ import annotations

import httpx

from mailferry.errors import (
    AmbiguousOutcomeError,
    CredentialsError,
    MailferryError,
    PermanentError,
    TenantError,
    TransientError,
)

Key = str | int | type[BaseException]
Entry = tuple[type[MailferryError], str, str]  # outcome, reason code, text for a person

TABLE: dict[Key, Entry] = {
    # Graph error codes
    "invalid_client": (CredentialsError, "bad-credentials", "the app's client id or secret is refused"),
    "unauthorized_client": (CredentialsError, "bad-credentials", "the app may not get tokens"),
    "invalid_scope": (TenantError, "oauth-refused", "the token endpoint refused the scope"),
    "InvalidAuthenticationToken": (CredentialsError, "bad-credentials", "Graph refused the access token"),
    "ErrorAccessDenied": (
        TenantError,
        "permission-denied",
        "the app lacks a mail permission",
    ),
    "ErrorInvalidUser": (PermanentError, "no-such-mailbox", "the mailbox does not exist"),
    "MailboxNotEnabledForRESTAPI": (
        PermanentError,
        "no-such-mailbox",
        "no Exchange Online mailbox",
    ),
    "ResourceNotFound": (PermanentError, "no-such-mailbox", "the mailbox does not exist"),
    "ErrorMessageSizeExceeded": (PermanentError, "size-exceeded", "the message is over the size limit"),
    "RequestEntityTooLarge": (PermanentError, "size-exceeded", "the request is over Graph's size limit"),
    "ErrorMimeContentConversionFailed": (
        PermanentError,
        "mime-conversion-failed",
        "cannot convert the MIME",
    ),
    "ErrorMimeContentInvalidBase64String": (
        PermanentError,
        "mime-conversion-failed",
        "MIME not base64",
    ),
    "ErrorQuotaExceeded": (TransientError, "mailbox-full", "the mailbox is over its quota"),
    "ApplicationThrottled": (TransientError, "throttled", "Graph throttled the app"),
    "ErrorServerBusy": (TransientError, "server-busy", "Exchange Online is busy"),
    "ErrorMailboxStoreUnavailable": (TransientError, "store-unavailable", "the mailbox store is down"),
    # HTTP statuses (exact, then class: 400 -> "4xx")
    401: (CredentialsError, "bad-credentials", "Graph refused the access token"),
    403: (TenantError, "permission-denied", "the app lacks a mail permission"),
    404: (PermanentError, "no-such-mailbox", "the mailbox or folder does not exist"),
    413: (PermanentError, "size-exceeded", "the request is over Graph's size limit"),
    429: (TransientError, "throttled", "Graph throttled the app (429)"),
    503: (TransientError, "server-unavailable", "Graph is unavailable"),
    507: (TransientError, "mailbox-full", "the mailbox is over its quota"),
    "4xx": (PermanentError, "request-refused", "Graph refused the request"),
    "5xx": (TransientError, "server-error", "Graph had a server error"),
    # transport
    httpx.ConnectError: (TransientError, "connect-failed", "cannot connect to Graph"),
    httpx.ConnectTimeout: (TransientError, "connect-failed", "cannot connect to Graph"),
    httpx.PoolTimeout: (TransientError, "connect-failed", "no free connection to Graph"),
    httpx.WriteTimeout: (TransientError, "timeout", "the request could not be sent in time"),
    httpx.ReadTimeout: (AmbiguousOutcomeError, "timeout-after-send", "no answer after the request was sent"),
    httpx.RemoteProtocolError: (AmbiguousOutcomeError, "timeout-after-send", "Graph dropped the connection"),
    httpx.ReadError: (AmbiguousOutcomeError, "timeout-after-send", "Graph dropped the connection"),
    httpx.TransportError: (TransientError, "transport", "Graph transport failure"),
}
_UNKNOWN: Entry = (TransientError, "unclassified", "unexpected Graph failure")


def _build(
    entry: Entry, detail: str, *, write: bool, tenant: str | None, retry_after: float | None
) -> MailferryError:
    outcome, reason, text = entry
    message = f"{text} ({detail[:300]})"
    if issubclass(outcome, TenantError):  # CredentialsError too
        return outcome(message, tenant=tenant, reason_code=reason)
    if outcome is PermanentError:
        return PermanentError(message, reason_code=reason)
    if outcome is AmbiguousOutcomeError and write:
        return AmbiguousOutcomeError(message, reason_code=reason)
    reason = "timeout" if outcome is AmbiguousOutcomeError else reason
    return TransientError(message, reason_code=reason, retry_after=retry_after)


def classify_response(
    status: int, code: str | None, detail: str, *, retry_after: float | None, tenant: str | None
) -> MailferryError:
    """The error for an HTTP answer that is not 2xx."""
    entry = (
        (TABLE.get(code) if code else None)
        or TABLE.get(status)
        or TABLE.get(f"{status // 100}xx")
        or _UNKNOWN
    )
    return _build(
        entry, f"HTTP {status} {code or ''}: {detail}", write=False, tenant=tenant, retry_after=retry_after
    )


def classify_exception(exc: BaseException, *, write: bool, tenant: str | None) -> MailferryError:
    """The error for an httpx exception; ``write`` marks a request that creates a message."""
    if isinstance(exc, MailferryError):
        return exc
    for kind in type(exc).__mro__:
        entry = TABLE.get(kind)
        if entry is not None:
            return _build(entry, f"{type(exc).__name__}: {exc}", write=write, tenant=tenant, retry_after=None)
    return _build(_UNKNOWN, f"{type(exc).__name__}: {exc}", write=write, tenant=tenant, retry_after=None)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (Graph sends delta-seconds)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
