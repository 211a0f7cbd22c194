"""IMAP IDLE (RFC 2177): wait on the server for new mail instead of sleeping a poll interval.

``imaplib`` (before Python 3.14) has no IDLE, so this sends the command on its connection and
watches the socket with ``select`` in one-second slices, which keeps the wait interruptible
by the worker's shutdown. Servers end IDLE on their own after about 30 minutes, so a wait is
capped at 29.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time

from mailferry.producers.access import TokenProvider
from mailferry.producers.imap_session import ImapSession
from mailferry.producers.state import MailboxState

from mailferry.config.sources import ImapSource
from mailferry.errors import TransientError

MAX_IDLE = 29 * 60
_NEW_MAIL = re.compile(rb"^\* \d+ (EXISTS|RECENT)", re.IGNORECASE)


class IdleUnsupportedError(TransientError):
    reason_code = "idle-unsupported"


def _readable(sock: socket.socket, timeout: float) -> bool:
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready)


def wait_for_mail(
    source: ImapSource,
    tokens: TokenProvider,
    timeout: float,
    stop: threading.Event,
    known: tuple[int, int] | None = None,
) -> bool:
    """IDLE on the first folder until new mail (True), ``timeout`` or ``stop`` (False).

    ``known`` is (UIDVALIDITY, highest UID) the last pass handled: mail that arrived between
    that pass and this IDLE shows up as a higher UIDNEXT and returns True at once.
    """
    session = ImapSession(source, tokens)
    try:
        if "IDLE" not in session.capabilities:
            raise IdleUnsupportedError(f"source {source.id}: the server has no IDLE")
        uidvalidity, _ = session.select(source.folders[0], readonly=True)
        if known is not None and (
            uidvalidity != known[0] or (session.uidnext is not None and session.uidnext > known[1] + 1)
        ):
            return True
        conn = session.conn
        tag = conn._new_tag()  # imaplib's own tag sequence, so the session stays consistent
        conn.send(tag + b" IDLE\r\n")
        if not conn.readline().startswith(b"+"):
            raise IdleUnsupportedError(f"source {source.id}: IDLE refused")
        deadline = time.monotonic() + min(timeout, MAX_IDLE)
        new_mail = False
        while not stop.is_set() and time.monotonic() < deadline:
            if not _readable(conn.sock, min(1.0, max(0.0, deadline - time.monotonic()))):
                continue
            line = conn.readline()
            if not line:
                raise TransientError(f"source {source.id}: connection closed during IDLE")
            if _NEW_MAIL.match(line):
                new_mail = True
                break
        conn.send(b"DONE\r\n")
        while not conn.readline().startswith(tag):
            pass
        return new_mail
    finally:
        session.logout()


def idle_known(state: MailboxState, source: ImapSource) -> tuple[int, int] | None:
    """(UIDVALIDITY, highest handled UID) of the folder IDLE watches, from the fetch state."""
    cursor = state.cursor(source.folders[0])
    if cursor is None or cursor["uidvalidity"] is None or cursor["uid"] is None:
        return None
    return int(cursor["uidvalidity"]), int(cursor["uid"])
