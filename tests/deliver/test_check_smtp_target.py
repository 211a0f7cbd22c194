"""``mailferry check`` of an SMTP target against a real aiosmtpd server: STARTTLS, EHLO, AUTH."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from mailferry.check.probe import check_target
from mailferry.config.models import Tenant
from mailferry.config.targets import SmtpTarget
from mailferry.config.types import SecretRef

from .smtp_sink import LoopbackCA, SmtpSink, make_test_ca

pytestmark = pytest.mark.integration


@pytest.fixture
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SmtpSink, LoopbackCA]]:
    ca = make_test_ca(tmp_path_factory.mktemp("ca"))
    with SmtpSink(ca, users={"mailferry": "s3cret"}) as server:
        yield server, ca


def _tenant(server: SmtpSink, ca: LoopbackCA, password: str) -> Tenant:
    target = SmtpTarget(
        name="relay",
        kind="smtp",
        host="127.0.0.1",
        port=server.port,
        ca_file=ca.ca_file,
        username="mailferry",
        password=SecretRef.plaintext(password),
        timeout=timedelta(seconds=5),
    )
    return Tenant(
        id="acme",
        accepted_domains=["acme.example"],
        default_mailbox="postmaster@acme.example",
        default_target="relay",
        targets=[target],
    )


def test_smtp_target_check(sink: tuple[SmtpSink, LoopbackCA]) -> None:
    server, ca = sink
    report = check_target(_tenant(server, ca, "s3cret"), "relay")
    assert report.ok and report.authenticated, report.error
    assert report.steps == ["EHLO and AUTH accepted (nothing sent)"]
    wrong = check_target(_tenant(server, ca, "wrong"), "relay")
    assert not wrong.ok and wrong.verdict.startswith("FAILED: ")
    assert server.handler.count() == 0  # nothing was sent
