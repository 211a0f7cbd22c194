"""SMTP target: inject into an Exchange receive connector (or any MTA).

Keeps Exchange's transport rules and anti-spam in the path. The message goes out unchanged
apart from mailferry's trace header(s), RCPT TO the resolved recipient, over STARTTLS
verified against the system CAs or ``ca_file``. DATA is streamed line by line (with dot
stuffing), so a 150 MB message never sits in memory whole. Each pool thread keeps its own
connection and reuses it for the next message.

Error table: 4xx → transient, 5xx → permanent, authentication or TLS failures →
tenant-wide, a lost connection after the final dot → ambiguous (the server may have
queued it; SMTP gives no way to ask, so ``already_delivered`` answers None). The attempt is
recorded right before the final dot (``DeliveryItem.committing``), which keeps the window for
a second copy after a crash as small as SMTP allows.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import BinaryIO

from mailferry.config import Tenant
from mailferry.config.targets import SmtpTarget
from mailferry.consumers.target import DeliveryItem, DeliveryTarget
from mailferry.errors import (
    AmbiguousOutcomeError,
    ConfigError,
    CredentialsError,
    MailferryError,
    PermanentError,
    TenantError,
    TransientError,
)
from mailferry.mail import added_headers
from mailferry.mail.addresses import first_address
from mailferry.mail.block import chunks_from, locate
from mailferry.mail.headers import parse_headers

LINE_LIMIT = 64 * 1024
SEND_BUFFER = 256 * 1024


class SmtpDelivery:
    def __init__(self, config: SmtpTarget) -> None:
        self.name = config.name
        self.max_message_size = config.max_message_size
        self.config = config
        self._local = threading.local()
        self._all: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self.config.ca_file) if self.config.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        timeout = cfg.timeout.total_seconds()
        try:
            conn: smtplib.SMTP
            if cfg.tls == "implicit":
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=timeout, context=self._tls_context())
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=timeout)
            conn.ehlo()
            if cfg.tls == "starttls":
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if cfg.username:
                # read at each login: a fixed secret file resumes a paused tenant
                password = cfg.password.reveal() if cfg.password is not None else ""
                conn.login(cfg.username, password)
        except Exception as exc:
            raise classify(exc, phase="connect") from exc
        with self._lock:
            self._all.append(conn)
        return conn

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection and whether it was used before (it may have gone stale)."""
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = self._open()
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except OSError:
            pass

    # -- the interface ----------------------------------------------------------------------

    def check_credentials(self) -> None:
        conn = self._open()
        with self._lock:
            self._all.remove(conn)
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def deliver(self, item: DeliveryItem) -> None:
        size = item.size + added_headers.prefix_size(item.add_headers)
        if self.max_message_size is not None and size > self.max_message_size:
            raise PermanentError(
                f"message of {size} bytes is over this target's limit of {self.max_message_size}",
                reason_code="message-too-large",
            )
        sender = self.config.mail_from if self.config.mail_from is not None else envelope_sender(item)
        conn, reused = self._connection()
        phase = "mail"
        try:
            options = [f"SIZE={size}"] if conn.has_extn("size") else []
            try:
                code, text = conn.mail(sender, options)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                self._drop()  # the server closed an idle connection: one fresh try
                conn, _ = self._connection()
                code, text = conn.mail(sender, options)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sender)
            phase = "rcpt"
            code, text = conn.rcpt(item.mailbox)
            if code not in (250, 251):
                raise smtplib.SMTPResponseException(code, text)
            phase = "data"
            code, text = conn.docmd("DATA")
            if code != 354:
                raise smtplib.SMTPDataError(code, text)
            with item.open_message() as source:
                _send_data(conn, item.add_headers, source, before_dot=item.committing)
            phase = "after-dot"
            code, text = conn.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, text)
        except Exception as exc:
            self._drop()
            raise classify(exc, phase=phase, recipient=item.mailbox) from exc

    def already_delivered(self, item: DeliveryItem) -> bool | None:
        return None

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()


def _send_data(
    conn: smtplib.SMTP,
    add_headers: tuple[tuple[str, str], ...],
    source: BinaryIO,
    *,
    before_dot: Callable[[], None] = lambda: None,
) -> None:
    """The message as SMTP DATA: CRLF line ends, leading dots doubled, final dot.

    ``before_dot`` runs when everything but the final dot is sent: until the dot the server
    discards the message if the connection drops, so that is where an attempt is recorded,
    and the window in which a crash can cause a second copy is the server's reply to the
    dot plus one Kafka acknowledgement (docs/reliability.md).

    Works on blocks of complete lines with ``bytes.replace`` (C) rather than line by line:
    a 76-column message has ~13,000 lines per MB, and the per-line loop was most of this
    target's CPU. A line longer than ``LINE_LIMIT`` is passed on in pieces, as before.
    """
    head = added_headers.prefix(add_headers)
    if head:
        conn.send(head)
    at_line_start = True
    carry = b""
    while block := source.read(SEND_BUFFER):
        block = carry + block
        end = block.rfind(b"\n") + 1
        if end == 0:  # no line end yet; an over-long line goes on in pieces, a CR run waits for its LF
            end = len(block.rstrip(b"\r")) if len(block) >= LINE_LIMIT else 0
            if end == 0 and len(block) < 16 * LINE_LIMIT:
                carry = block
                continue
            end = end or len(block)
        carry = block[end:]
        conn.send(_stuffed(block[:end], at_line_start))
        at_line_start = block[end - 1 : end] == b"\n"
    tail = b""
    if carry:
        tail = _stuffed(carry, at_line_start) + b"\r\n"
    elif not at_line_start:
        tail = b"\r\n"
    if tail:
        conn.send(tail)
    before_dot()
    conn.send(b".\r\n")


def _stuffed(lines: bytes, at_line_start: bool) -> bytes:
    """``lines`` with every line end CRLF (CR runs before LF folded, as ``rstrip`` did) and
    each line that starts with a dot given a second one."""
    while b"\r\n" in lines:
        lines = lines.replace(b"\r\n", b"\n")
    lines = lines.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
    return b"." + lines if at_line_start and lines.startswith(b".") else lines


def envelope_sender(item: DeliveryItem) -> str:
    """Return-Path, else Sender, else From of the message; empty (the null sender) if none
    of them holds a valid address."""
    with item.open_message() as source:
        headers = parse_headers(locate(chunks_from(source)).data)
    values = [v for name in ("Return-Path", "Sender", "From") for v in headers.get_all(name)[:1]]
    return first_address(values) or ""


def classify(exc: BaseException, *, phase: str, recipient: str | None = None) -> MailferryError:
    """The error table of this target: the SMTP boundary's mapper."""
    if isinstance(exc, ConfigError):  # the password's secret cannot be read: every message fails
        return TenantError(str(exc), reason_code="secret-unavailable")
    if isinstance(exc, MailferryError):
        return exc
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return CredentialsError(f"SMTP login refused: {_reply(exc)}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return TenantError(f"SMTP server: {exc}", reason_code="starttls-unavailable")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TenantError(
            f"SMTP TLS certificate not trusted: {exc.verify_message}", reason_code="tls-untrusted"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        text = f"SMTP {phase} {code} {_reply(exc)}"
        if 400 <= code < 500:
            return TransientError(text, reason_code=f"smtp-{code}")
        reason = "recipient-refused" if phase == "rcpt" else f"smtp-{code}"
        if code == 552 or (code == 554 and "size" in text.lower()):
            reason = "message-too-large"
        return PermanentError(
            text + (f" (recipient {recipient})" if phase == "rcpt" else ""), reason_code=reason
        )
    if phase == "after-dot" and isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
        return AmbiguousOutcomeError(f"SMTP connection lost after the message was sent: {exc}")
    if isinstance(exc, socket.timeout | TimeoutError):
        return TransientError(f"SMTP {phase}: timed out", reason_code="timeout")
    if isinstance(exc, smtplib.SMTPException | OSError):
        return TransientError(f"SMTP {phase}: {exc}", reason_code="connection")
    return TransientError(f"SMTP {phase}: {type(exc).__name__}: {exc}", reason_code="unclassified")


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def create(tenant: Tenant, target: SmtpTarget) -> DeliveryTarget:
    return SmtpDelivery(target)
