"""A pipelining POP3 client on a plain (or TLS) socket, reading in large blocks.

Hand-written on purpose: ``poplib`` sends one command, waits for the reply and reads it line
by line; on loopback against Dovecot that reaches about 14% of what the server can send (brief
§6). Dovecot announces PIPELINING, so this client keeps a window of RETR commands in flight and
reads replies in 256 KiB blocks, unstuffing whole lines at a time (``pop3_wire.DotUnstuffer``).
Large messages are yielded as chunks, never held whole.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Literal

from mailferry.producers.pop3_wire import TERMINATOR, DotUnstuffer, Pop3ProtocolError, check_status


class Pop3ReplyTooLongError(Pop3ProtocolError):
    """A multi-line reply past its cap: the session is dropped, nothing of it is used."""


READ_SIZE = 256 * 1024
MAX_LINE = 64 * 1024
WINDOW = 64
MAX_LISTING_LINES = 1_000_000
"""UIDL/LIST: a mailbox of a million messages is far past any real one; a server sending more
is broken or hostile and would otherwise fill memory without end."""
MAX_LISTING_LINE = 84  # "<number up to 10 digits> <unique id up to 70>\r\n", with room to spare
MAX_CAPA_LINES = 1000
MAX_HEADERS = 4 * 1024 * 1024  # TOP n 0: the header block cap of the stream app

TlsMode = Literal["implicit", "starttls", "none"]


class Pop3Client:
    """One POP3 session. Not thread-safe; one pass of one mailbox owns it."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self._sock = sock
        self._host = host
        self._buf = b""
        self._pos = 0  # start of the unread part of _buf (slicing it per line would copy it)
        self.greeting = b""
        self.secure = isinstance(sock, ssl.SSLSocket)
        self.capabilities: dict[str, list[str]] = {}

    @property
    def socket(self) -> socket.socket:
        """The connection, for its TLS version and certificate (``mailferry check``)."""
        return self._sock

    @classmethod
    def connect(
        cls, host: str, port: int, *, tls: TlsMode, context: ssl.SSLContext, timeout: float
    ) -> Pop3Client:
        """Connect, read the greeting and, for ``starttls``, upgrade with STLS before anything else."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if tls == "implicit":
                sock = context.wrap_socket(sock, server_hostname=host)
            client = cls(sock, host)
            client.greeting = check_status(client.readline())
            client.capabilities = client.capa()
            if tls == "starttls":
                client.stls(context)
                client.capabilities = client.capa()
            return client
        except BaseException:
            sock.close()
            raise

    # -- reading ------------------------------------------------------------------------------
    def _recv(self) -> bytes:
        data = self._sock.recv(READ_SIZE)
        if not data:
            raise Pop3ProtocolError("connection closed by the server")
        return data

    def readline(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end + 2]
                self._pos = end + 2
                return line
            if len(self._buf) - self._pos > MAX_LINE:
                raise Pop3ProtocolError("reply line longer than 64 KiB")
            self._buf = self._buf[self._pos :] + self._recv()
            self._pos = 0

    def _take_buffer(self) -> bytes:
        data = self._buf[self._pos :] if self._pos else self._buf
        self._buf, self._pos = b"", 0
        return data

    def _body_chunks(self) -> Iterator[bytes]:
        """The unstuffed body of the multi-line reply whose status line was just read."""
        whole = self._whole_body()
        if whole is not None:
            yield whole
            return
        unstuffer = DotUnstuffer()
        data = self._take_buffer()
        while True:
            out = unstuffer.feed(data)
            if out:
                yield out
            if unstuffer.done:
                self._buf, self._pos = unstuffer.rest, 0
                return
            data = self._recv()

    def _whole_body(self) -> bytes | None:
        """The body when its whole reply is already in the buffer (the common case for small
        messages, several to a read), cut out with one copy; ``None`` otherwise.

        The reply starts at a line start, so the first ``CRLF.CRLF`` after it is its end (a
        body line "." travels stuffed as ".."). Going through ``DotUnstuffer`` instead would
        copy the rest of the buffer once per message.
        """
        buf, pos = self._buf, self._pos
        if buf.startswith(b".\r\n", pos):
            self._pos = pos + 3
            return b""
        end = buf.find(TERMINATOR, pos)
        if end < 0:
            return None
        body = buf[pos : end + 2]
        self._pos = end + len(TERMINATOR)
        if body.startswith(b".."):
            body = body[1:]
        return body.replace(b"\r\n..", b"\r\n.")

    def _body(self, what: str, max_bytes: int, max_lines: int | None = None) -> bytes:
        """The whole body of a multi-line reply, refused past ``max_bytes`` (or ``max_lines``)."""
        parts: list[bytes] = []
        size = lines = 0
        for chunk in self._body_chunks():
            size += len(chunk)
            lines += chunk.count(b"\n")
            if size > max_bytes or (max_lines is not None and lines > max_lines):
                limit = f"{max_lines:,} lines" if max_lines is not None else f"{max_bytes:,} bytes"
                raise Pop3ReplyTooLongError(f"the server's {what} reply is longer than {limit}")
            parts.append(chunk)
        return b"".join(parts)

    # -- commands -----------------------------------------------------------------------------
    def send(self, *lines: str) -> None:
        self._sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def command(self, line: str) -> bytes:
        self.send(line)
        return check_status(self.readline())

    def multiline(self, line: str, max_lines: int) -> list[bytes]:
        """A multi-line reply as lines; a reply of more than ``max_lines`` lines (or of lines
        longer than ``MAX_LISTING_LINE`` on average) is refused before it is all read."""
        self.command(line)
        body = self._body(line.split(" ")[0], max_lines * MAX_LISTING_LINE, max_lines)
        return body.split(b"\r\n")[:-1]

    def capa(self) -> dict[str, list[str]]:
        try:
            lines = self.multiline("CAPA", MAX_CAPA_LINES)
        except Pop3ReplyTooLongError:
            raise
        except Exception:
            return {}
        caps: dict[str, list[str]] = {}
        for raw in lines:
            words = raw.decode("ascii", "replace").split()
            if words:
                caps[words[0].upper()] = words[1:]
        return caps

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.capabilities

    def stls(self, context: ssl.SSLContext) -> None:
        if "STLS" not in self.capabilities:
            raise Pop3ProtocolError("the server does not offer STLS")
        self.command("STLS")
        if self._take_buffer():
            raise Pop3ProtocolError("data after the STLS reply (possible injection)")
        self._sock = context.wrap_socket(self._sock, server_hostname=self._host)
        self.secure = True

    # -- authentication -----------------------------------------------------------------------
    def login_user(self, user: str, password: str) -> None:
        self.command(f"USER {user}")
        self.command(f"PASS {password}")

    def login_apop(self, user: str, password: str) -> None:
        match = re.search(rb"<[^>]+>", self.greeting)
        if match is None:
            raise Pop3ProtocolError("the server offers no APOP timestamp in its greeting")
        digest = hashlib.md5(match.group(0) + password.encode()).hexdigest()
        self.command(f"APOP {user} {digest}")

    def login_sasl(self, mechanism: str, initial_response: bytes) -> None:
        """SASL with an initial response (RFC 5034); an error challenge is answered with '*'."""
        encoded = base64.b64encode(initial_response).decode()
        self.send(f"AUTH {mechanism} {encoded}")
        line = self.readline()
        if line.startswith(b"+ ") or line == b"+\r\n":
            self.send("*" if mechanism == "OAUTHBEARER" else "")
            line = self.readline()
        check_status(line)

    # -- transaction state --------------------------------------------------------------------
    def uidl(self) -> list[bytes]:
        return self.multiline("UIDL", MAX_LISTING_LINES)

    def list(self) -> list[bytes]:
        return self.multiline("LIST", MAX_LISTING_LINES)

    def top(self, number: int, lines: int = 0) -> bytes:
        self.command(f"TOP {number} {lines}")
        return self._body("TOP", MAX_HEADERS)

    def retrieve(self, numbers: Iterable[int]) -> Iterator[tuple[int, Iterator[bytes]]]:
        """``(number, chunks)`` per message, RETRs pipelined when the server allows it.

        The caller must consume each ``chunks`` before asking for the next message; breaking
        off leaves replies in flight, so the session must then be dropped (``close``).
        """
        pending = list(numbers)
        window = WINDOW if self.pipelining else 1
        sent = 0
        for index, number in enumerate(pending):
            if sent < len(pending) and sent - index <= window // 2:
                batch = pending[sent : index + window]
                self.send(*(f"RETR {n}" for n in batch))
                sent += len(batch)
            check_status(self.readline())
            chunks = self._body_chunks()
            yield number, chunks
            for _ in chunks:  # whatever the caller left unread
                pass

    def delete(self, numbers: Iterable[int]) -> None:
        wanted = list(numbers)
        window = WINDOW if self.pipelining else 1
        for start in range(0, len(wanted), window):
            batch = wanted[start : start + window]
            self.send(*(f"DELE {n}" for n in batch))
            for _ in batch:
                check_status(self.readline())

    def quit(self) -> None:
        """QUIT: the server applies the deletions only when it answers +OK to this."""
        try:
            self.command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
