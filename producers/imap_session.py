"""An IMAP session on stdlib ``imaplib`` (run in a worker thread), plus the parsing it needs.

``imaplib`` reads literals in one piece, so messages above the inline threshold are fetched
in partial ranges (``BODY.PEEK[]<offset.length>``) and streamed: memory stays at one range.
"""

from __future__ import annotations

import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mailferry.config.sources import ImapSource, PasswordAuth
from mailferry.errors import CredentialsError, TransientError
from mailferry.producers.access import (
    TokenProvider,
    check_plaintext,
    sasl_response,
    tls_context,
)

DEFAULT_PORTS = {"implicit": 993, "starttls": 143, "none": 143}
PART_SIZE = 4 * 1024 * 1024
MAX_MESSAGE = 2 * 1024 * 1024 * 1024  # past this a server sending ranges without end is not mail
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_ITEM = re.compile(rb"^\d+ \(")
_TEMPORARY = ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]")


def quote(name: str) -> str:
    """An IMAP quoted string (folder names may contain spaces)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: list[int]) -> str:
    """``1:3,7,9:10`` for a sorted or unsorted list of UIDs."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = ordered[0] if ordered else 0
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev > start else str(start))
        start = prev = uid
    if ordered:
        parts.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(parts)


@dataclass(frozen=True)
class FetchedItem:
    uid: int
    data: bytes | None
    size: int | None


def parse_fetch(data: list[object]) -> list[FetchedItem]:
    """Items of a ``UID FETCH`` answer (``imaplib`` gives tuples for literals, bytes otherwise)."""
    items: list[FetchedItem] = []
    current_head: bytes | None = None
    current_body: bytes | None = None

    def close(tail: bytes) -> None:
        nonlocal current_head, current_body
        if current_head is None:
            return
        text = current_head + b" " + tail
        uid = _UID.search(text)
        size = _SIZE.search(text)
        if uid is not None:
            items.append(FetchedItem(int(uid.group(1)), current_body, int(size.group(1)) if size else None))
        current_head = current_body = None

    for part in data:
        if isinstance(part, tuple):
            close(b"")
            current_head, current_body = bytes(part[0]), bytes(part[1])
        elif isinstance(part, bytes):
            if current_head is not None:
                close(part)
            elif _ITEM.match(part):
                current_head, current_body = part, None
                close(b"")
    close(b"")
    return items


class ImapSession:
    """Connected, authenticated ``imaplib`` session for one source."""

    def __init__(self, source: ImapSource, tokens: TokenProvider) -> None:
        self.source = source
        port = source.port or DEFAULT_PORTS[source.tls]
        context = tls_context(source)
        timeout = source.timeout.total_seconds()
        conn: imaplib.IMAP4
        if source.tls == "implicit":
            conn = imaplib.IMAP4_SSL(source.host, port, ssl_context=context, timeout=timeout)
        else:
            conn = imaplib.IMAP4(source.host, port, timeout=timeout)
        try:
            if source.tls == "starttls":
                conn.starttls(ssl_context=context)
            self.conn = conn
            self.uidnext: int | None = None
            self.secure = isinstance(conn.sock, ssl.SSLSocket)
            self._login(port, tokens)
        except BaseException:
            try:
                conn.shutdown()
            except OSError:
                pass
            raise

    def _login(self, port: int, tokens: TokenProvider) -> None:
        auth = self.source.auth
        try:
            if isinstance(auth, PasswordAuth):
                check_plaintext(self.source, self.secure)
                self.conn.login(self.source.username, auth.password.reveal())
            else:
                mechanism, response = sasl_response(self.source, tokens, port)
                sent = [False]

                def answer(_challenge: bytes) -> bytes:
                    if sent[0]:
                        return b""  # an error challenge: abort, the server then says NO
                    sent[0] = True
                    return response

                self.conn.authenticate(mechanism, answer)
        except imaplib.IMAP4.error as exc:
            text = str(exc)
            if any(code in text.upper() for code in _TEMPORARY):
                raise TransientError(f"source {self.source.id}: {text}", reason_code="server-busy") from exc
            raise CredentialsError(f"source {self.source.id}: login refused: {text}") from exc

    @property
    def capabilities(self) -> set[str]:
        return {c.upper() for c in self.conn.capabilities}

    def check(self, typ: str, data: Sequence[object], what: str) -> Sequence[object]:
        if typ != "OK":
            detail = data[0].decode(errors="replace") if data and isinstance(data[0], bytes) else data
            raise TransientError(f"source {self.source.id}: {what}: {detail}", reason_code="server-error")
        return data

    def select(self, folder: str, *, readonly: bool = False) -> tuple[int, int]:
        """SELECT (or, read-only, EXAMINE) ``folder``; (UIDVALIDITY, message count)."""
        typ, data = self.conn.select(quote(folder), readonly=readonly)
        self.check(typ, data, f"SELECT {folder}")
        _, values = self.conn.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise TransientError(
                f"source {self.source.id}: no UIDVALIDITY for {folder}", reason_code="protocol"
            )
        exists = int(data[0]) if data and isinstance(data[0], bytes) and data[0].isdigit() else 0
        _, uidnext = self.conn.response("UIDNEXT")
        self.uidnext = int(uidnext[0]) if uidnext and isinstance(uidnext[0], bytes) else None
        return int(values[0]), exists

    def search_uids(self, criteria: str) -> list[int]:
        typ, data = self.conn.uid("SEARCH", criteria)
        self.check(typ, data, "UID SEARCH")
        raw = data[0] if data and isinstance(data[0], bytes) else b""
        return [int(x) for x in raw.split()]

    def sizes(self, uids: list[int]) -> dict[int, int]:
        if not uids:
            return {}
        typ, data = self.conn.uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)")
        self.check(typ, data, "UID FETCH RFC822.SIZE")
        return {item.uid: item.size for item in parse_fetch(data) if item.size is not None}

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """Whole messages, in one command (for small messages)."""
        typ, data = self.conn.uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])")
        self.check(typ, data, "UID FETCH BODY.PEEK[]")
        return {item.uid: item.data for item in parse_fetch(data) if item.data is not None}

    def headers(self, uid: int) -> bytes:
        typ, data = self.conn.uid("FETCH", str(uid), "(UID BODY.PEEK[HEADER])")
        self.check(typ, data, "UID FETCH BODY.PEEK[HEADER]")
        for item in parse_fetch(data):
            if item.uid == uid and item.data is not None:
                return item.data
        raise TransientError(f"source {self.source.id}: UID {uid} vanished", reason_code="vanished")

    def stream(self, uid: int) -> Iterator[bytes] | None:
        """A large message in ``PART_SIZE`` ranges, read to its real end; ``None`` when the
        server gives no body for ``uid``.

        The announced ``RFC822.SIZE`` is not trusted to end the loop: a server that announced
        5 MiB for a 9 MiB message would otherwise have the message cut at a range boundary.
        The caller compares what arrived with what was announced.
        """
        first = self._part(uid, 0)
        if first is None:
            return None
        return self._parts(uid, first)

    def _part(self, uid: int, offset: int) -> bytes | None:
        typ, data = self.conn.uid("FETCH", str(uid), f"(UID BODY.PEEK[]<{offset}.{PART_SIZE}>)")
        self.check(typ, data, "UID FETCH BODY.PEEK[]<partial>")
        parts = [item.data for item in parse_fetch(data) if item.uid == uid and item.data is not None]
        return parts[0] if parts else None

    def _parts(self, uid: int, first: bytes) -> Iterator[bytes]:
        part: bytes | None = first
        offset = 0
        while part:
            offset += len(part)
            if offset > MAX_MESSAGE:
                raise TransientError(
                    f"source {self.source.id}: UID {uid} is larger than {MAX_MESSAGE >> 20} MiB",
                    reason_code="too-large",
                )
            yield part
            if len(part) < PART_SIZE:
                return
            part = self._part(uid, offset)

    def store(self, uids: list[int], flags: str) -> None:
        typ, data = self.conn.uid("STORE", uid_set(uids), "+FLAGS.SILENT", flags)
        self.check(typ, data, "UID STORE")

    def expunge(self, uids: list[int]) -> None:
        if "UIDPLUS" in self.capabilities:
            typ, data = self.conn.uid("EXPUNGE", uid_set(uids))
        else:
            typ, data = self.conn.expunge()
        self.check(typ, data, "EXPUNGE")

    def move(self, uids: list[int], target: str) -> None:
        if "MOVE" in self.capabilities:
            typ, data = self.conn.uid("MOVE", uid_set(uids), quote(target))
            self.check(typ, data, f"UID MOVE {target}")
            return
        typ, data = self.conn.uid("COPY", uid_set(uids), quote(target))
        self.check(typ, data, f"UID COPY {target}")
        self.store(uids, r"(\Deleted)")
        self.expunge(uids)

    def logout(self) -> None:
        try:
            self.conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass

    def close(self) -> None:
        try:
            self.conn.shutdown()
        except OSError:
            pass
