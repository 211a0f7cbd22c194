"""SMTP DATA framing of the block-wise encoder, against a plain statement of the rules.

The reference below says what DATA must be: every line (split at LF) with its CRs before the
LF dropped and CRLF added, a dot doubled at the start of a line, a final partial line closed
with CRLF, then the lone dot. The encoder works on blocks for speed; small block and
line-limit sizes here put block boundaries everywhere, including inside CR LF pairs, dots
and over-long lines.
"""

from __future__ import annotations

import io
import random

import pytest

from mailferry.consumers.targets import smtp


class Recorder:
    """Stands in for ``smtplib.SMTP``: keeps what would go on the wire."""

    def __init__(self) -> None:
        self.wire = bytearray()

    def send(self, data: bytes) -> None:
        self.wire += data


def reference(add_headers: tuple[tuple[str, str], ...], message: bytes) -> bytes:
    out = bytearray()
    for name, value in add_headers:
        out += f"{name}: {value}\r\n".encode()
    *lines, last = message.split(b"\n")
    for line in lines:
        line = line.rstrip(b"\r")
        out += (b"." if line.startswith(b".") else b"") + line + b"\r\n"
    if last:
        out += (b"." if last.startswith(b".") else b"") + last + b"\r\n"
    return bytes(out + b".\r\n")


def encoded(add_headers: tuple[tuple[str, str], ...], message: bytes) -> bytes:
    conn = Recorder()
    smtp._send_data(conn, add_headers, io.BytesIO(message))  # type: ignore[arg-type]
    return bytes(conn.wire)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b".",
        b"\n",
        b".\r\n",
        b"a\r\n.b\r\n..c\r\n.\r\nend",
        b"bare\nlf\n.dot\n",
        b"cr\r\r\nruns\r\n\r\n",
        b"no final line end",
        b"x" * 100 + b"\r\n." + b"y" * 100,
    ],
)
def test_known_framings(message: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp, "SEND_BUFFER", 7)
    monkeypatch.setattr(smtp, "LINE_LIMIT", 5)
    headers = (("X-Trace", "1"),)
    assert encoded(headers, message) == reference(headers, message)


def test_random_messages_match_the_line_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261129)
    for _ in range(3000):
        send_buffer = rng.randint(1, 40)
        line_limit = rng.randint(1, 20)
        monkeypatch.setattr(smtp, "SEND_BUFFER", send_buffer)
        monkeypatch.setattr(smtp, "LINE_LIMIT", line_limit)
        message = bytes(rng.choice(b"ab.\r\n\n") for _ in range(rng.randint(0, 120)))
        assert encoded((), message) == reference((), message), (message, send_buffer, line_limit)


def test_real_sized_message_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(
        (b"." if i % 7 == 0 else b"") + b"z" * (i % 90) + (b"\n" if i % 3 else b"\r\n") for i in range(40_000)
    )
    assert encoded((), body) == reference((), body)
