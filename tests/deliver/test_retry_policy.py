"""The retry policy decides by error type, attempt history, tiers and horizon alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailferry.consumers.retry_policy import DeadLetter, History, Origin, PauseTenant, Retry, decide, due_at
from mailferry.errors import (
    AmbiguousOutcomeError,
    ConfigError,
    CredentialsError,
    MailferryError,
    MalformedMessageError,
    PermanentError,
    SetupError,
    TenantError,
    TransientError,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TIERS = [timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1)]
HORIZON = timedelta(days=3)
ORIGIN = Origin("p.deliver", 2, 41, 3)


def _decide(error: BaseException, history: History = History(), now: datetime = NOW) -> object:
    return decide(error, history, now=now, tiers=TIERS, horizon=HORIZON, origin=ORIGIN)


def test_first_transient_failure_goes_to_the_first_tier() -> None:
    decision = _decide(TransientError("busy", reason_code="server-busy"))
    assert isinstance(decision, Retry)
    assert decision.tier == 0
    assert decision.due_at == NOW + timedelta(minutes=1)
    assert decision.history.attempts == 1
    assert decision.history.first_failed_at == NOW
    assert decision.history.origin == ORIGIN


def test_each_failure_moves_one_tier_and_stays_on_the_last() -> None:
    history = History(
        attempts=1, first_failed_at=NOW - timedelta(minutes=1), origin=Origin("p.deliver", 0, 7)
    )
    second = _decide(TransientError("busy"), history)
    assert isinstance(second, Retry) and second.tier == 1
    assert second.history.origin == Origin("p.deliver", 0, 7)  # the first record stays the origin
    late = _decide(TransientError("busy"), History(attempts=9, first_failed_at=NOW - timedelta(hours=5)))
    assert isinstance(late, Retry) and late.tier == 2
    assert late.due_at == NOW + timedelta(hours=1)


def test_server_back_off_hint_longer_than_the_tier_wins() -> None:
    decision = _decide(TransientError("throttled", retry_after=300))
    assert isinstance(decision, Retry)
    assert decision.due_at == NOW + timedelta(seconds=300)
    short_hint = _decide(TransientError("throttled", retry_after=2))
    assert isinstance(short_hint, Retry) and short_hint.due_at == NOW + timedelta(minutes=1)


def test_past_the_horizon_is_a_dead_letter() -> None:
    history = History(attempts=40, first_failed_at=NOW - HORIZON + timedelta(minutes=30))
    decision = _decide(TransientError("store unavailable", reason_code="store-unavailable"), history)
    assert isinstance(decision, DeadLetter)
    assert decision.error_class == "transient-expired"
    assert decision.reason_code == "store-unavailable"
    assert decision.history.attempts == 41
    inside = History(attempts=40, first_failed_at=NOW - HORIZON + timedelta(hours=2))
    assert isinstance(_decide(TransientError("x"), inside), Retry)


def test_permanent_and_malformed_go_straight_to_the_dlt() -> None:
    permanent = _decide(PermanentError("no such mailbox", reason_code="no-such-mailbox"))
    assert isinstance(permanent, DeadLetter)
    assert (permanent.error_class, permanent.reason_code) == ("permanent", "no-such-mailbox")
    malformed = _decide(MalformedMessageError("bad MIME"))
    assert isinstance(malformed, DeadLetter) and malformed.error_class == "malformed-message"


def test_tenant_errors_pause_instead_of_dead_lettering() -> None:
    decision = _decide(TenantError("bad credentials", reason_code="bad-credentials"))
    assert decision == PauseTenant("bad-credentials")


@pytest.mark.parametrize(
    "error",
    [
        CredentialsError("login refused"),
        ConfigError("target exchange: oauth2 needs tenant_id"),
        SetupError("the secret file is missing"),
    ],
)
def test_every_operator_error_pauses_and_none_dead_letters(error: MailferryError) -> None:
    """Config, setup and credentials say nothing about the message: it waits, never dead-lettered."""
    assert _decide(error) == PauseTenant(error.reason_code)


def test_ambiguous_outcome_is_remembered_for_the_next_attempt() -> None:
    decision = _decide(AmbiguousOutcomeError("timeout after send"))
    assert isinstance(decision, Retry) and decision.history.ambiguous
    following = _decide(TransientError("busy"), decision.history)
    assert isinstance(following, Retry) and following.history.ambiguous


def test_unclassified_errors_are_retried_not_lost() -> None:
    decision = _decide(RuntimeError("bug in a target"))
    assert isinstance(decision, Retry) and decision.tier == 0


def test_history_round_trips_through_kafka_headers() -> None:
    decision = _decide(AmbiguousOutcomeError("timeout"))
    assert isinstance(decision, Retry)
    headers = decision.history.to_headers(decision.due_at, "ambiguous-outcome")
    assert History.from_headers(headers) == decision.history
    assert due_at(headers) == decision.due_at
    assert History.from_headers(None) == History()
    assert due_at([]) is None
