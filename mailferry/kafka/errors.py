"""The Kafka boundary's mapper: kafka-python's exceptions into mailferry's error tree, one table.

A refused SASL login or ACL is the operator's to fix (``OperatorError``: the role pauses and
reports, mail waits); a record Kafka will never take is a verdict on that record
(``PermanentError``); everything else (no broker, a timeout, a moving leader, any error
kafka-python calls retriable) is an outage to wait out (``TransientError``).
"""

from __future__ import annotations

from kafka import errors as kafka

from mailferry.errors import (
    ConfigError,
    CredentialsError,
    MailferryError,
    OperatorError,
    PermanentError,
    TransientError,
)

_OPERATOR: tuple[tuple[type[Exception], type[OperatorError], str], ...] = (
    (kafka.SaslAuthenticationFailedError, CredentialsError, "kafka-bad-credentials"),
    (kafka.UnsupportedSaslMechanismError, OperatorError, "kafka-sasl-mechanism"),
    (kafka.AuthorizationError, OperatorError, "kafka-acl-denied"),  # topic, group, cluster ACLs
)
_PERMANENT: tuple[type[Exception], ...] = (
    kafka.MessageSizeTooLargeError,
    kafka.RecordListTooLargeError,
    kafka.InvalidRecordError,
)


def classify(exc: BaseException, action: str) -> MailferryError:
    """The mailferry error for ``exc``, raised while doing ``action`` (``blob store: write``)."""
    if isinstance(exc, MailferryError):
        return exc
    detail = f"{action}: {type(exc).__name__}: {exc}"
    if isinstance(exc, kafka.KafkaConfigurationError):
        return ConfigError(f"Kafka client settings: {detail}")
    for kind, outcome, reason in _OPERATOR:
        if isinstance(exc, kind):
            return outcome(detail, reason_code=reason)
    if isinstance(exc, _PERMANENT):
        return PermanentError(detail, reason_code="kafka-record-refused")
    return TransientError(detail, reason_code="kafka-unavailable")
