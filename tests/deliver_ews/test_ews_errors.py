"""The EWS error table on exception chains shaped like the ones exchangelib raises."""

from __future__ import annotations

import requests.exceptions
from exchangelib import errors as ews
from urllib3.exceptions import MaxRetryError, NewConnectionError

from mailferry.errors import AmbiguousOutcomeError, PermanentError, TenantError, TransientError
from mailferry.exchange.ews.errors import classify


def _chained(*excs: BaseException) -> BaseException:
    """Innermost first: each one raised while handling the previous, as exchangelib does."""
    inner: BaseException | None = None
    for exc in excs:
        exc.__context__ = inner
        inner = exc
    return excs[-1]


def test_read_timeout_wrapped_as_busy_is_ambiguous_for_writes_only() -> None:
    exc = _chained(
        requests.exceptions.ReadTimeout("read timed out"),
        ews.ErrorTimeoutExpired("Reraised from ReadTimeout"),
        ews.ErrorServerBusy("Reraised from ErrorTimeoutExpired", back_off=0),
    )
    write = classify(exc, write=True)
    read = classify(exc, write=False)
    assert type(write) is AmbiguousOutcomeError
    assert type(read) is TransientError
    assert read.retry_after is None


def test_refused_connection_is_never_ambiguous() -> None:
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "refused"))
    )
    exc = _chained(refused, ews.ErrorTimeoutExpired("Reraised from ConnectionError"))
    result = classify(exc, write=True)
    assert type(result) is TransientError
    assert result.reason_code == "connect-failed"


def test_busy_keeps_the_server_back_off() -> None:
    result = classify(ews.ErrorServerBusy("busy", back_off=12.5), write=True)
    assert isinstance(result, TransientError)
    assert result.retry_after == 12.5


def test_503_wrapped_in_busy_is_transient_without_invented_back_off() -> None:
    exc = _chained(
        ews.ErrorInternalServerTransientError("Caused by HTTP 503 response"),
        ews.ErrorServerBusy("Reraised", back_off=0),
    )
    result = classify(exc, write=True)
    assert type(result) is TransientError
    assert result.reason_code == "server-unavailable"
    assert result.retry_after is None


def test_tenant_and_permanent_classes() -> None:
    bad = classify(ews.UnauthorizedError("Invalid credentials"), write=False, tenant="t1")
    assert isinstance(bad, TenantError)
    assert bad.tenant == "t1"
    gone = classify(ews.ErrorNonExistentMailbox("no mailbox"), write=True)
    assert type(gone) is PermanentError
    assert gone.reason_code == "no-such-mailbox"


def test_bugs_are_dead_lettered_not_retried_and_unknown_ews_errors_are_retried() -> None:
    assert type(classify(TypeError("bad argument"), write=True)) is PermanentError
    unknown = classify(ews.ErrorCalendarIsDelegatedForDecline("odd"), write=True)
    assert type(unknown) is TransientError
    assert unknown.reason_code == "unclassified"
