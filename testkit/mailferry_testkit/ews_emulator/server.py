"""EWS EMULATOR — not Microsoft Exchange.

An HTTP + SOAP stand-in for an Exchange Web Services endpoint, for tests, demos and
benchmarks on loopback. It answers the operations mailferry's EWS target sends through the
real exchangelib, strictly (see ``soap`` and ``operations``), with basic, bearer and
(opt-in, ``enable_ntlm``) NTLM authentication, ``ExchangeImpersonation`` honoured, request
bodies read in chunks with MimeContent decoded as it arrives (``body``: a 200 MB streamed
CreateItem is fine), a concurrency budget like Exchange's throttling policy
(``max_concurrent``; excess requests get ErrorServerBusy with BackOffMilliseconds), a
per-request ``service_time`` to mimic a server's cost, and faults on demand (``inject``).
It keeps what was created per mailbox so tests can read it back.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from mailferry_testkit.certs import TestPki
from mailferry_testkit.ews_emulator import ntlm
from mailferry_testkit.ews_emulator.body import RequestBody
from mailferry_testkit.ews_emulator.common import Context
from mailferry_testkit.ews_emulator.faults import Fault, FaultScript, ScriptedFault
from mailferry_testkit.ews_emulator.oauth import TokenIssuer
from mailferry_testkit.ews_emulator.operations import OPERATIONS, single_error, unsupported
from mailferry_testkit.ews_emulator.soap import EwsFault, ItemError, Request, envelope, fault, parse_request
from mailferry_testkit.ews_emulator.store import Store, StoredItem
from mailferry_testkit.identity_emulator import IdentityHost

log = logging.getLogger("mailferry_testkit.ews_emulator")
SERVER_HEADER = "EWS-EMULATOR (not Microsoft Exchange)"
EWS_PATH = "/EWS/Exchange.asmx"
_ITEM_FAULTS = {
    Fault.STORE_UNAVAILABLE: (
        "ErrorMailboxStoreUnavailable",
        "The mailbox database is temporarily unavailable.",
    ),
    Fault.QUOTA_EXCEEDED: ("ErrorQuotaExceeded", "The mailbox quota has been exceeded."),
    Fault.SIZE_EXCEEDED: ("ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."),
    Fault.MIME_CONVERSION_FAILED: ("ErrorMimeContentConversionFailed", "Content conversion failed."),
}


class _Account:
    def __init__(self, user: str, password: str, impersonation: bool, mailbox: str | None) -> None:
        self.user = user
        self.password = password
        self.impersonation = impersonation
        self.mailbox = mailbox


class EwsEmulator(IdentityHost):
    """EWS EMULATOR — not Microsoft Exchange. ``start()`` serves on 127.0.0.1, a free port."""

    banner = "EWS EMULATOR (not Microsoft Exchange)"

    def __init__(
        self,
        max_concurrent: int | None = None,
        service_time: float = 0.0,
        *,
        busy_back_off_ms: int = 1000,
        max_message_size: int = 64 * 1024 * 1024,
        server_version: tuple[int, int, int, int] = (15, 1, 2507, 6),
        tls: TestPki | None = None,
    ) -> None:
        self.tls = tls  # serve HTTPS with this certificate (tests of the client's verification)
        self.max_concurrent = max_concurrent
        self.service_time = service_time
        self.busy_back_off_ms = busy_back_off_ms
        self.max_message_size = max_message_size
        self.server_version = server_version
        self.store = Store()
        self.faults = FaultScript()
        self._accounts: dict[str, _Account] = {}
        self._tokens: dict[str, str] = {}  # bearer token -> account user
        self.oauth = TokenIssuer("https://outlook.office365.com")
        self._lock = threading.Lock()
        self._in_flight = 0
        self.requests: dict[str, int] = {}  # operation -> count, for tests and benchmarks
        self.last_headers: dict[str, dict[str, str]] = {}  # operation -> HTTP headers of its last request
        self.rejected_busy = 0
        self.ntlm_domain: str | None = None
        self.ntlm_per_request = False

    # ---- set-up ------------------------------------------------------------------------------

    def add_account(
        self, user: str, password: str, *, impersonation: bool = True, mailbox: str | None = None
    ) -> None:
        """A service account (basic auth); ``impersonation`` is the ApplicationImpersonation role."""
        self._accounts[user.lower()] = _Account(user, password, impersonation, mailbox)
        if self.ntlm_domain is not None:
            ntlm.register(self.ntlm_domain, user, password)

    def enable_ntlm(self, domain: str, *, per_request: bool = False) -> None:
        """Accept NTLM (``DOMAIN\\user``) for every account, added before or after.

        ``per_request`` is IIS's ``authPersistSingleRequest``: every request does the whole
        handshake again instead of the connection staying authenticated.
        """
        self.ntlm_domain = domain
        self.ntlm_per_request = per_request
        for account in self._accounts.values():
            ntlm.register(domain, account.user, account.password)

    def account(self, user: str) -> _Account | None:
        return self._accounts.get(user.lower())

    def add_token(self, token: str, user: str) -> None:
        """Accept ``Authorization: Bearer <token>`` as ``user`` (an account added before)."""
        self._tokens[token] = user.lower()

    def add_app(
        self, client_id: str, secret: str | None, tenant: str, user: str, *, certificate: bytes | None = None
    ) -> None:
        """An app registration whose client-credentials tokens act as account ``user``."""
        self.oauth.add_app(client_id, secret, tenant, principal=user.lower(), certificate=certificate)

    def token_url(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}/oauth2/v2.0/token"

    def add_mailbox(self, address: str, aliases: tuple[str, ...] | list[str] = ()) -> None:
        self.store.add_mailbox(address, tuple(aliases))

    def items(self, address: str) -> list[StoredItem]:
        return self.store.items(address)

    def inject(
        self,
        fault: Fault | str,
        count: int = 1,
        *,
        operation: str | None = None,
        delay: float = 5.0,
        back_off_ms: int = 2000,
    ) -> None:
        """Answer the next ``count`` requests (of ``operation``, or any) with ``fault``."""
        self.faults.add(ScriptedFault(Fault(fault), count, operation, delay, back_off_ms))

    # ---- life cycle --------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def tls_pki(self) -> TestPki | None:
        return self.tls

    @property
    def url(self) -> str:
        return f"{self.origin}{EWS_PATH}"

    # ---- request handling --------------------------------------------------------------------

    def authenticate(self, header: str | None) -> _Account | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            account = self._accounts.get(user.lower())
            return account if account is not None and account.password == password else None
        if scheme.lower() == "bearer":
            owner = self._tokens.get(value.strip()) or self.oauth.principal(value.strip())
            return self._accounts.get(owner) if owner else None
        return None

    def admit(self) -> bool:
        with self._lock:
            if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
                self.rejected_busy += 1
                return False
            self._in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count(self, operation: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests[operation] = self.requests.get(operation, 0) + 1
            self.last_headers[operation] = headers

    def handle(self, account: _Account, req: Request, scripted: ScriptedFault | None) -> bytes:
        """Run one parsed request; raises ``EwsFault`` for request-level failures."""
        handler = OPERATIONS.get(req.operation)
        if handler is None:
            raise unsupported(req.operation)
        acting = None
        if req.impersonate is not None:
            if not account.impersonation or (scripted and scripted.fault is Fault.IMPERSONATION_DENIED):
                raise EwsFault(
                    "ErrorImpersonateUserDenied", "The account does not have permission to impersonate."
                )
            kind, value = req.impersonate
            found = self.store.primary(value) if kind == "PrimarySmtpAddress" else None
            if kind in ("SmtpAddress", "PrincipalName"):
                found = self.store.by_any_address(value)
            if found is None:
                raise EwsFault("ErrorNonExistentMailbox", f"The SMTP address {value} has no mailbox.")
            acting = found
        elif account.mailbox:
            acting = self.store.primary(account.mailbox)
        if scripted and scripted.fault is Fault.NO_SUCH_MAILBOX:
            raise EwsFault("ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it.")
        if scripted and scripted.fault in _ITEM_FAULTS:
            content = single_error(req.operation, ItemError(*_ITEM_FAULTS[scripted.fault]))
        else:
            ctx = Context(
                store=self.store,
                account=account.user,
                acting=acting,
                impersonated=req.impersonate[1] if req.impersonate else None,
                max_message_size=self.max_message_size,
            )
            content = handler(req, ctx)
        return envelope(content, server_version=self.server_version)


class _Handler(BaseHTTPRequestHandler):
    emulator: EwsEmulator
    protocol_version = "HTTP/1.1"
    ntlm_state: ntlm.NtlmConnection | None = None  # one handler per connection, so per connection

    def version_string(self) -> str:
        return SERVER_HEADER

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("EWS EMULATOR: " + format, *args)

    def do_GET(self) -> None:
        self._reply(405, b"EWS EMULATOR (not Microsoft Exchange): POST SOAP here\n", "text/plain")

    def do_POST(self) -> None:
        emulator = self.emulator
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._reply(411, b"EWS EMULATOR: send a Content-Length\n", "text/plain")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.split("?")[0].lower() != EWS_PATH.lower():
            data = self.rfile.read(length)
            token = emulator.oauth.handle(self.path, self.headers.get("Authorization"), data)
            if token is not None:
                self._reply(token[0], token[1], "application/json")
            else:
                self._reply(404, b"not found\n", "text/plain")
            return
        request_body = RequestBody(self.rfile, length)
        account = self._authenticate()
        if account is None:
            request_body.drain()
            return
        try:
            req = parse_request(request_body.chunks(), mime_limit=emulator.max_message_size)
        except EwsFault as exc:
            self._reply(500, fault(exc))
            return
        finally:
            request_body.drain()
        emulator.count(req.operation, dict(self.headers.items()))
        scripted = emulator.faults.take(req.operation)
        if scripted is not None and self._early_fault(scripted):
            return
        if not emulator.admit():
            busy = EwsFault("ErrorServerBusy", "The server cannot service this request right now.")
            busy.back_off_ms = emulator.busy_back_off_ms
            self._reply(500, fault(busy))
            return
        try:
            if emulator.service_time:
                time.sleep(emulator.service_time)
            try:
                body = emulator.handle(account, req, scripted)
                status = 200
            except EwsFault as exc:
                body, status = fault(exc), 500
        finally:
            emulator.release()
        if scripted is not None and scripted.fault is Fault.TIMEOUT_AFTER_STORE:
            time.sleep(scripted.delay)
        self._reply(status, body)

    def _early_fault(self, scripted: ScriptedFault) -> bool:
        """Faults answered before any work is done; True when the request is finished."""
        if scripted.fault is Fault.SERVER_BUSY:
            busy = EwsFault("ErrorServerBusy", "The server cannot service this request right now.")
            busy.back_off_ms = scripted.back_off_ms
            self._reply(500, fault(busy))
        elif scripted.fault is Fault.HTTP_500:
            self._reply(500, b"<html>Server Error in '/EWS' Application.</html>", "text/html")
        elif scripted.fault is Fault.HTTP_503:
            self._reply(503, b"Service Unavailable", "text/plain")
        elif scripted.fault is Fault.UNAUTHORIZED:
            self._unauthorized()
        elif scripted.fault is Fault.SLOW:
            time.sleep(scripted.delay)
            return False
        else:
            return False
        return True

    def _authenticate(self) -> _Account | None:
        """The account of this request; None when a 401 was sent (challenge or refusal)."""
        header = self.headers.get("Authorization") or ""
        if self.emulator.ntlm_domain is not None and header.lower().startswith("ntlm "):
            if self.ntlm_state is None:
                self.ntlm_state = ntlm.NtlmConnection()
            challenge, refused = self.ntlm_state.step(header)
            if challenge is not None or refused:
                self._unauthorized(challenge)
                return None
            account = self.emulator.account(self.ntlm_state.user or "")
            if self.emulator.ntlm_per_request:
                self.ntlm_state = None
        elif not header and self.ntlm_state is not None and self.ntlm_state.user:
            account = self.emulator.account(self.ntlm_state.user)  # NTLM authenticated the connection
        else:
            account = self.emulator.authenticate(header)
        if account is None:
            self._unauthorized()
        return account

    def _unauthorized(self, ntlm_challenge: str | None = None) -> None:
        self.send_response(401)
        if ntlm_challenge is not None:
            self.send_header("WWW-Authenticate", f"NTLM {ntlm_challenge}")
        else:
            self.send_header("WWW-Authenticate", 'Basic realm="EWS EMULATOR"')
            self.send_header("WWW-Authenticate", "Bearer")
            if self.emulator.ntlm_domain is not None:
                self.send_header("WWW-Authenticate", "NTLM")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _reply(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("EWS EMULATOR: client went away before the answer")
