"""A real SMTP server (aiosmtpd) on loopback for the SMTP target's tests, with a test CA.

The handler keeps what it accepted and can be told to answer a recipient with a given
reply, or to stall after the final dot (the ambiguous case).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mailferry_testkit.certs import TestPki, make_test_pki

LoopbackCA = TestPki


def make_test_ca(folder: Path) -> LoopbackCA:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost (the Dovecot one)."""
    return make_test_pki(folder)


@dataclass
class Accepted:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SinkHandler:
    accepted: list[Accepted] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)  # recipient -> reply at RCPT
    data_reply: str | None = None  # reply after the final dot instead of 250
    stall_after_dot_s: float = 0.0  # then accept anyway, too late for the client
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        reply = self.replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import asyncio

        if self.stall_after_dot_s:
            await asyncio.sleep(self.stall_after_dot_s)
        if self.data_reply is not None:
            return self.data_reply
        with self.lock:
            self.accepted.append(
                Accepted(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 queued"

    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpSink:
    """aiosmtpd on 127.0.0.1 with STARTTLS required and optional AUTH."""

    def __init__(
        self, ca: LoopbackCA, *, users: dict[str, str] | None = None, require_starttls: bool = True
    ) -> None:
        self.handler = SinkHandler()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca.cert_file, ca.key_file)
        self.users = users or {}

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and self.users.get(data.login.decode()) == data.password.decode()
            )
            return AuthResult(success=ok, handled=False)

        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=_free_port(),
            tls_context=context,
            require_starttls=require_starttls,
            authenticator=authenticate if users else None,
            auth_required=bool(users),
            data_size_limit=200 * 1024 * 1024,
            ready_timeout=10,
        )

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.handler.count() < count and time.monotonic() < deadline:
            time.sleep(0.1)
