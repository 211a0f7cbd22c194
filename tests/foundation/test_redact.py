"""Revealed secrets are cut out of every log record, in clear, URL-encoded or inside base64."""

from __future__ import annotations

import base64
import io
import logging
import uuid
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest

from mailferry import redact
from mailferry.config.secrets import SecretRef


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of a library (any name) writing into a string; redaction installed as the CLI does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger(f"some.library.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    redact.install()
    yield logger, out
    logger.removeHandler(handler)


@pytest.mark.parametrize("prefix", ["svc:", "svc-account:", "u:"])
def test_a_revealed_secret_never_reaches_a_log_line(
    log: tuple[logging.Logger, io.StringIO], prefix: str
) -> None:
    logger, captured = log
    value = f"pw+{uuid.uuid4().hex}/="
    assert SecretRef.plaintext(value).reveal() == value
    basic = base64.b64encode(f"{prefix}{value}".encode()).decode()
    logger.debug("Request headers: %s", {"Authorization": f"Basic {basic}"})
    logger.debug(
        "Prepared fetch token request body client_id=app&client_secret=%s&scope=x", quote_plus(value)
    )
    logger.info("clear %s", value)
    try:
        raise RuntimeError(f"login failed for {value}")
    except RuntimeError:
        logger.exception("it failed")
    text = captured.getvalue()
    assert "Request headers" in text and "it failed" in text and "RuntimeError" in text
    for form in (value, quote_plus(value), basic):
        assert form not in text
    assert text.count(redact.MASK) >= 4


def test_short_values_are_left_alone(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, captured = log
    SecretRef.plaintext("pw").reveal()
    logger.info("pwd is a word")
    assert "pwd is a word" in captured.getvalue()


def test_oauth_access_tokens_are_masked_by_shape(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, captured = log
    logger.debug("Request headers: %s", {"Authorization": "Bearer eyJ0eXAi.Jpc3MiOi-_x/y+z="})
    logger.debug('Response content {"access_token": "tok-1a2b3c", "expires_in": 3599}')
    logger.debug("body grant_type=refresh&refresh_token=r3fr3sh&x=1")
    text = captured.getvalue()
    assert "eyJ0eXAi" not in text and "tok-1a2b3c" not in text and "r3fr3sh" not in text
    assert "Bearer ***" in text and '"expires_in": 3599' in text and "&x=1" in text
