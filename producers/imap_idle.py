"""IMAP IDLE (RFC 2177): wait on the server for new mail instead of sleeping a poll interval.

``imaplib`` (before Python 3.14) has no IDLE, so this sends the command on its connection and
watches the socket with ``select`` in one-second slices, which keeps the wait interruptible
by the worker's shutdown. Servers end IDLE on their own after about 30 minutes, so a wait is
capped at 29.
Every configured folder is watched, each on its own connection.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping

from mailferry.config.sources import ImapSource
from mailferry.errors import TransientError
from mailferry.producers.access import TokenProvider
from mailferry.producers.imap_session import ImapSession
from mailferry.producers.state import MailboxState

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
    known: Mapping[str, tuple[int, int]] | None = None,
) -> bool:
    """IDLE on every configured folder until one has new mail (True), ``timeout`` or ``stop``
    (False).

    IDLE watches the selected folder only, so each folder gets its own connection (a source
    with N folders holds N connections while it waits; servers cap connections per user, e.g.
    Dovecot's ``mail_max_userip_connections``, 10 by default). The first folder is watched in
    this thread, the others in short-lived threads; the first to see mail ends every watch.

    ``known`` maps a folder to (UIDVALIDITY, highest UID) the last pass handled: mail that
    arrived between that pass and this IDLE shows up as a higher UIDNEXT and returns True at once.
    """
    known = known or {}
    ended = threading.Event()  # a folder saw mail or failed: the other watches end too

    def over() -> bool:
        return stop.is_set() or ended.is_set()

    found: list[bool] = []
    errors: list[BaseException] = []

    def watch(folder: str) -> None:
        try:
            if _watch(source, tokens, folder, timeout, over, known.get(folder)):
                found.append(True)
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)
        finally:
            if found or errors:
                ended.set()

    others = [
        threading.Thread(target=watch, args=(folder,), name=f"idle {source.id} {folder}", daemon=True)
        for folder in source.folders[1:]
    ]
    for thread in others:
        thread.start()
    watch(source.folders[0])
    for thread in others:
        thread.join()
    if found:
        return True
    if errors:
        raise errors[0]
    return False


def _watch(
    source: ImapSource,
    tokens: TokenProvider,
    folder: str,
    timeout: float,
    stopped: Callable[[], bool],
    known: tuple[int, int] | None,
) -> bool:
    """IDLE on one folder until new mail (True), ``timeout`` or ``stopped()`` (False)."""
    session = ImapSession(source, tokens)
    try:
        if "IDLE" not in session.capabilities:
            raise IdleUnsupportedError(f"source {source.id}: the server has no IDLE")
        uidvalidity, _ = session.select(folder, readonly=True)
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
        while not stopped() and time.monotonic() < deadline:
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


def idle_known(state: MailboxState, source: ImapSource) -> dict[str, tuple[int, int]]:
    """Per folder IDLE watches: (UIDVALIDITY, highest handled UID), from the fetch state."""
    known: dict[str, tuple[int, int]] = {}
    for folder in source.folders:
        cursor = state.cursor(folder)
        if cursor is not None and cursor["uidvalidity"] is not None and cursor["uid"] is not None:
            known[folder] = (int(cursor["uidvalidity"]), int(cursor["uid"]))
    return known
