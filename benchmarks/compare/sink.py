"""An SMTP sink on loopback (aiosmtpd) that counts what arrives and when.

Every client under test that delivers over SMTP talks to the same sink, so the sink's own cost
is the same for all of them. It keeps one arrival per (message, recipient): the ``X-Bench-Id``
header names the message, the arrival time lets the latency scenario pair it with the moment
the message entered the source.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

_BENCH_ID = re.compile(rb"^X-Bench-Id:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)
_HEADER_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Arrival:
    bench_id: str
    recipients: tuple[str, ...]
    size: int
    at: float  # time.time()


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        header_end = content.find(b"\r\n\r\n", 0, _HEADER_LIMIT)
        found = _BENCH_ID.search(content, 0, header_end if header_end >= 0 else _HEADER_LIMIT)
        arrival = Arrival(
            bench_id=found.group(1).decode("ascii", "replace") if found else "",
            recipients=tuple(envelope.rcpt_tos),
            size=len(content),
            at=time.time(),
        )
        with self.lock:
            self.arrivals.append(arrival)
        return "250 OK"


class _BlockDataSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's server with the DATA payload read by ``readuntil`` and un-stuffed by ``replace``
    (both in C) instead of line by line. Hand-written because aiosmtpd has no block mode."""

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = self._reader
        line_limit = reader._limit
        reader._limit = 2**31 - 1  # the payload is one "line" up to the end marker
        payload = bytearray()
        try:
            while not (payload == b".\r\n" or payload.endswith(b"\r\n.\r\n")):
                payload += await reader.readuntil(b".\r\n")
        finally:
            reader._limit = line_limit
        del payload[-3:]
        if payload.startswith(b".."):
            del payload[0]
        content = bytes(payload).replace(b"\r\n..", b"\r\n.")
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class _BlockDataController(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        return _BlockDataSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(self, port: int = 0) -> None:
        self._handler = _Handler()
        self._controller = _BlockDataController(
            self._handler,
            hostname="127.0.0.1",
            port=port or _free_port(),
            data_size_limit=0,  # no limit: the corpus has 50 MB messages (aiosmtpd's default is 32 MiB)
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def reset(self) -> None:
        with self._handler.lock:
            self._handler.arrivals.clear()

    def arrivals(self) -> list[Arrival]:
        with self._handler.lock:
            return list(self._handler.arrivals)

    def count(self) -> int:
        with self._handler.lock:
            return len(self._handler.arrivals)

    def wait_for(self, count: int, timeout: float, poll: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= count:
                return True
            time.sleep(poll)
        return self.count() >= count


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
