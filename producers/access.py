"""How a fetcher gets in: TLS context, credentials (password or OAuth2 token), SASL strings,
and the one table that turns socket/TLS/protocol failures into mailferry errors.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass

import httpx

from mailferry.config.sources import (
    OAuth2ClientCredentials,
    OAuth2Command,
    PasswordAuth,
    SourceBase,
)
from mailferry.errors import ConfigError, CredentialsError, MailferryError, OperatorError, TransientError
from mailferry.producers.pop3_client import Pop3ReplyTooLongError
from mailferry.producers.pop3_wire import Pop3ErrorReply, Pop3ProtocolError


class PlaintextLoginRefusedError(OperatorError):
    """The config would send a password in the clear; ``allow_plaintext_login`` decides."""

    reason_code = "plaintext-login-refused"


_CONTEXTS: dict[tuple[str | None, float], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def tls_context(source: SourceBase) -> ssl.SSLContext:
    """System trust store plus the source's ``ca_file``; hostnames and chains always verified.

    Shared per CA file (and its modification time): loading the system store costs about
    0.15 s of CPU, far too much to pay on every pass of every mailbox.
    """
    try:
        stamp = source.ca_file.stat().st_mtime if source.ca_file is not None else 0.0
    except OSError as exc:
        raise ConfigError(f"source {source.id}: cannot read ca_file {source.ca_file}: {exc}") from exc
    key = (str(source.ca_file) if source.ca_file is not None else None, stamp)
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = ssl.create_default_context()
            if source.ca_file is not None:
                try:
                    context.load_verify_locations(cafile=str(source.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        f"source {source.id}: cannot load ca_file {source.ca_file}: {exc}"
                    ) from exc
            _CONTEXTS[key] = context
        return context


def check_plaintext(source: SourceBase, secure: bool) -> None:
    """Refuse to send a password over an unencrypted connection unless the config says so."""
    if secure or not isinstance(source.auth, PasswordAuth) or source.allow_plaintext_login:
        return
    raise PlaintextLoginRefusedError(
        f"source {source.id}: the connection is not encrypted and allow_plaintext_login is off"
    )


def xoauth2(user: str, token: str) -> bytes:
    """The XOAUTH2 initial response (Google/Microsoft)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str, port: int) -> bytes:
    """The OAUTHBEARER initial response (RFC 7628) with a GS2 header naming the user."""
    safe_user = user.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={safe_user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenProvider:
    """OAuth2 access tokens for sources, cached until shortly before they expire."""

    def __init__(self) -> None:
        self._cache: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def token(self, source: SourceBase) -> str:
        auth = source.auth
        cache_key = f"{source.id}:{source.username}"
        with self._lock:
            cached = self._cache.get(cache_key)
            if cached is not None and cached.expires_at > time.monotonic():
                return cached.value
        if isinstance(auth, OAuth2Command):
            value, lifetime = self._from_command(auth), 300.0
        elif isinstance(auth, OAuth2ClientCredentials):
            value, lifetime = self._from_endpoint(auth)
        else:
            raise ConfigError(f"source {source.id} does not use OAuth2")
        with self._lock:
            self._cache[cache_key] = _Token(value, time.monotonic() + max(lifetime - 60.0, 30.0))
        return value

    @staticmethod
    def _from_command(auth: OAuth2Command) -> str:
        try:
            result = subprocess.run(auth.command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TransientError(f"token command failed: {exc}", reason_code="token") from exc
        token = result.stdout.strip()
        if result.returncode != 0 or not token:
            raise TransientError(
                f"token command exited {result.returncode} without a token", reason_code="token"
            )
        return token

    @staticmethod
    def _from_endpoint(auth: OAuth2ClientCredentials) -> tuple[str, float]:
        try:
            response = httpx.post(
                auth.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": auth.client_id,
                    "client_secret": auth.client_secret.reveal(),
                    "scope": auth.scope,
                },
                timeout=30,
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"token endpoint unreachable: {exc}", reason_code="token") from exc
        if response.status_code in (400, 401, 403):
            raise CredentialsError(f"token endpoint refused the client ({response.status_code})")
        if response.status_code != 200:
            raise TransientError(f"token endpoint answered {response.status_code}", reason_code="token")
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))


def sasl_response(source: SourceBase, tokens: TokenProvider, port: int) -> tuple[str, bytes]:
    """(mechanism, initial response) for an OAuth2 source."""
    auth = source.auth
    assert not isinstance(auth, PasswordAuth)
    token = tokens.token(source)
    if auth.mechanism == "OAUTHBEARER":
        return "OAUTHBEARER", oauthbearer(source.username, token, source.host, port)
    return "XOAUTH2", xoauth2(source.username, token)


def classify(exc: BaseException, source_id: str) -> MailferryError:
    """The mailferry error for what went wrong talking to a source (one table, by type): the
    POP3/IMAP boundary's mapper. A refused login is a ``CredentialsError`` (the mailbox pauses)."""
    if isinstance(exc, MailferryError):
        return exc
    where = f"source {source_id}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransientError(f"{where}: certificate not trusted: {exc.verify_message}", reason_code="tls")
    if isinstance(exc, ssl.SSLError):
        return TransientError(f"{where}: TLS failed: {exc}", reason_code="tls")
    if isinstance(exc, socket.timeout | TimeoutError):
        return TransientError(f"{where}: timed out", reason_code="timeout")
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return TransientError(f"{where}: cannot connect: {exc}", reason_code="unreachable")
    if isinstance(exc, OSError):
        return TransientError(f"{where}: connection failed: {exc}", reason_code="connection")
    if isinstance(exc, Pop3ErrorReply):
        if exc.code == "AUTH":
            return CredentialsError(f"{where}: login refused: {exc}")
        return TransientError(f"{where}: server error: {exc}", reason_code="server-error")
    if isinstance(exc, Pop3ReplyTooLongError):
        return TransientError(f"{where}: {exc}", reason_code="reply-too-long")
    if isinstance(exc, Pop3ProtocolError | imaplib.IMAP4.abort):
        return TransientError(f"{where}: protocol error: {exc}", reason_code="protocol")
    if isinstance(exc, imaplib.IMAP4.error):
        text = str(exc)
        if "AUTHENTICATIONFAILED" in text.upper() or "AUTHENTICATE" in text.upper():
            return CredentialsError(f"{where}: login refused: {text}")
        return TransientError(f"{where}: server error: {text}", reason_code="server-error")
    return TransientError(f"{where}: {type(exc).__name__}: {exc}", reason_code="unexpected")
