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


class SmtpSink:
    def __init__(self, port: int = 0) -> None:
        self._handler = _Handler()
        self._controller = Controller(
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
