"""One mapper per boundary turns its library's exceptions into mailferry's error tree, and the
rule is the same at every boundary: a refused login is a ``CredentialsError`` (an operator error:
the mailbox or tenant pauses, mail waits), never a per-message ``PermanentError``."""

from __future__ import annotations

import imaplib
import smtplib

import pytest
from exchangelib import errors as ews_errors
from kafka import errors as kafka_errors

from mailferry.consumers.targets import smtp
from mailferry.errors import (
    ConfigError,
    CredentialsError,
    MailferryError,
    OperatorError,
    PermanentError,
    SetupError,
    TenantError,
    TransientError,
)
from mailferry.exchange.ews.errors import classify as ews_classify
from mailferry.exchange.graph.errors import classify_response as graph_response
from mailferry.kafka.errors import classify as kafka_classify
from mailferry.producers.access import classify as source_classify
from mailferry.producers.pop3_wire import Pop3ErrorReply


def test_operator_errors_are_no_verdict_on_a_message() -> None:
    for kind in (ConfigError, SetupError, TenantError, CredentialsError):
        assert issubclass(kind, OperatorError)
        assert not issubclass(kind, PermanentError | TransientError)
    assert not issubclass(PermanentError, OperatorError) and not issubclass(TransientError, OperatorError)


@pytest.mark.parametrize(
    "refusal",
    [
        source_classify(Pop3ErrorReply(b"-ERR [AUTH] Authentication failed."), "pop"),
        source_classify(imaplib.IMAP4.error("b'[AUTHENTICATIONFAILED] Authentication failed.'"), "imap"),
        smtp.classify(smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), phase="connect"),
        kafka_classify(kafka_errors.SaslAuthenticationFailedError("bad password"), "produce"),
        ews_classify(ews_errors.UnauthorizedError("401"), write=False, tenant="acme"),
        graph_response(401, None, "token refused", retry_after=None, tenant="acme"),
        graph_response(400, "invalid_client", "AADSTS7000215", retry_after=None, tenant="acme"),
    ],
    ids=["pop3", "imap", "smtp", "kafka", "ews", "graph-401", "graph-token"],
)
def test_a_refused_login_is_a_credentials_error_at_every_boundary(refusal: MailferryError) -> None:
    assert isinstance(refusal, CredentialsError), refusal
    assert refusal.reason_code.endswith("bad-credentials")


@pytest.mark.parametrize(
    ("exc", "expected", "reason"),
    [
        (kafka_errors.TopicAuthorizationFailedError("no ACL"), OperatorError, "kafka-acl-denied"),
        (kafka_errors.KafkaConfigurationError("bad setting"), ConfigError, "config"),
        (kafka_errors.MessageSizeTooLargeError("too big"), PermanentError, "kafka-record-refused"),
        (kafka_errors.BrokerNotAvailableError("down"), TransientError, "kafka-unavailable"),
        (kafka_errors.KafkaTimeoutError("slow"), TransientError, "kafka-unavailable"),
        (kafka_errors.NotLeaderForPartitionError("moved"), TransientError, "kafka-unavailable"),
    ],
)
def test_the_kafka_table(exc: Exception, expected: type[MailferryError], reason: str) -> None:
    error = kafka_classify(exc, "blob store kafka: write")
    assert type(error) is expected and error.reason_code == reason
    assert "blob store kafka: write" in str(error)


def test_source_outages_stay_transient_and_mailferry_errors_pass_through() -> None:
    assert isinstance(source_classify(ConnectionRefusedError(111, "refused"), "s"), TransientError)
    assert isinstance(source_classify(TimeoutError(), "s"), TransientError)
    assert isinstance(source_classify(imaplib.IMAP4.error("NO mailbox busy"), "s"), TransientError)
    config = ConfigError("source s: cannot read ca_file")
    assert source_classify(config, "s") is config and kafka_classify(config, "x") is config
