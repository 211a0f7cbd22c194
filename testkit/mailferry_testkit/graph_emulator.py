"""GRAPH EMULATOR — not Microsoft Graph.

A loopback stand-in for the few Microsoft Graph mail calls mailferry makes, for tests and
demos: the client-credentials token endpoint, ``importMime`` (beta) and JSON message
creation (v1.0) in a mailbox folder, the ``internetMessageId`` filter, and the user
look-up by proxy address. Strict where Graph is strict (Content-Type, known JSON members,
``x-`` internet headers only, extended-property id syntax, primary address in the path),
with Graph's throttling (4 concurrent requests per mailbox, 429 + Retry-After) and faults on
demand. It keeps what was created per mailbox so tests can read it back.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mailferry_testkit import graph_batch
from mailferry_testkit.ews_emulator.oauth import TokenIssuer
from mailferry_testkit.identity_emulator import IdentityHost

log = logging.getLogger("mailferry_testkit.graph_emulator")
SERVER_HEADER = "GRAPH-EMULATOR (not Microsoft Graph)"
MAILBOX_CONCURRENCY = 4
JSON_MEMBERS = frozenset(
    {
        *("subject", "body", "from", "sender", "toRecipients", "ccRecipients", "bccRecipients"),
        *("replyTo", "internetMessageId", "internetMessageHeaders", "isRead", "importance"),
        *("attachments", "singleValueExtendedProperties"),
    }
)
EXTENDED_ID = re.compile(r"^(Integer|SystemTime|String|Boolean) 0x[0-9A-Fa-f]{4}$")
NAMED_ID = re.compile(
    r"^(?P<kind>Integer|SystemTime|String|Boolean) "
    r"\{(?P<guid>[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})\}"
    r" Name (?P<name>\S+)$"
)
_FOLDER = r"/users/(?P<user>[^/]+)/mailFolders/(?P<folder>[^/]+)"
ROUTES = [
    ("importMime", "POST", re.compile(rf"^/beta{_FOLDER}/importMime$")),
    ("createMessage", "POST", re.compile(rf"^/v1\.0{_FOLDER}/messages$")),
    ("listMessages", "GET", re.compile(rf"^/v1\.0{_FOLDER}/messages$")),
    ("users", "GET", re.compile(r"^/v1\.0/users$")),
    ("batch", "POST", re.compile(r"^/(?P<version>v1\.0|beta)/\$batch$")),
]
QUOTED = r"'(?P<{}>(?:[^']|'')*)'"
MESSAGE_ID_CLAUSE = re.compile(r"^internetMessageId eq " + QUOTED.format("value") + "$")
PROPERTY_CLAUSE = re.compile(
    r"^singleValueExtendedProperties/any\((?P<v>\w+):\s*(?P=v)/id eq "
    + QUOTED.format("id")
    + r" and (?P=v)/value eq "
    + QUOTED.format("value")
    + r"\)$"
)
SELECTABLE = frozenset({"id", "internetMessageId", "internetMessageHeaders", "subject", "isRead", "isDraft"})
PROXY_FILTER = re.compile(r"^proxyAddresses/any\((?P<v>\w+):(?P=v) eq '(?P<value>(?:[^']|'')*)'\)$")


class GraphFault(StrEnum):
    THROTTLED = "throttled"  # 429 with Retry-After
    UNAVAILABLE = "unavailable"  # 503 with Retry-After
    UNAUTHORIZED = "unauthorized"  # 401 InvalidAuthenticationToken
    FORBIDDEN = "forbidden"  # 403 ErrorAccessDenied
    NO_SUCH_MAILBOX = "no-such-mailbox"  # 404 ErrorInvalidUser
    SIZE_EXCEEDED = "size-exceeded"  # 413
    MIME_INVALID = "mime-invalid"  # 400 ErrorMimeContentConversionFailed
    QUOTA_EXCEEDED = "quota-exceeded"  # 507 ErrorQuotaExceeded
    SLOW = "slow"  # wait, then answer normally
    TIMEOUT_AFTER_STORE = "timeout-after-store"  # do the work, then wait before answering


_FAULT_ANSWERS: dict[GraphFault, tuple[int, str, str]] = {
    GraphFault.THROTTLED: (429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    GraphFault.UNAVAILABLE: (503, "ServiceUnavailable", "The service is temporarily unavailable."),
    GraphFault.UNAUTHORIZED: (
        401,
        "InvalidAuthenticationToken",
        "Access token has expired or is not yet valid.",
    ),
    GraphFault.FORBIDDEN: (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    GraphFault.NO_SUCH_MAILBOX: (404, "ErrorInvalidUser", "The requested user is invalid."),
    GraphFault.SIZE_EXCEEDED: (413, "ErrorMessageSizeExceeded", "The message exceeds the maximum size."),
    GraphFault.MIME_INVALID: (
        400,
        "ErrorMimeContentConversionFailed",
        "The MIME content could not be converted.",
    ),
    GraphFault.QUOTA_EXCEEDED: (507, "ErrorQuotaExceeded", "The mailbox is over its quota."),
}


@dataclass
class _Scripted:
    fault: GraphFault
    remaining: int
    operation: str | None
    delay: float
    retry_after: int


@dataclass(frozen=True)
class GraphItem:
    id: str
    mailbox: str
    folder: str
    mode: str  # "import-mime" or "json"
    mime: bytes | None  # the imported MIME, byte for byte (import-mime)
    message: dict[str, Any]  # the JSON a client posted (json)
    is_read: bool
    is_draft: bool
    internet_message_id: str | None
    extended: dict[str, str] = field(default_factory=dict)


class _Reply(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.text, self.headers = status, code, message, headers or {}


class GraphEmulator(IdentityHost):
    """GRAPH EMULATOR — not Microsoft Graph. ``start()`` serves on 127.0.0.1, a free port."""

    banner = "GRAPH EMULATOR (not Microsoft Graph)"

    def __init__(self, *, max_message_size: int = 35 * 1024 * 1024, throttle_retry_after: int = 1) -> None:
        self.max_message_size = max_message_size
        self.throttle_retry_after = throttle_retry_after
        self.oauth = TokenIssuer("https://graph.microsoft.com")
        self._roles: dict[str, frozenset[str]] = {}  # client id -> application permissions
        self._mailboxes: dict[str, tuple[str, tuple[str, ...]]] = {}  # primary lower -> (primary, aliases)
        self._items: dict[str, list[GraphItem]] = {}
        self._in_flight: dict[str, int] = {}
        self._faults: list[_Scripted] = []
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}  # per operation; a batch's steps each count too
        self.batch_sizes: list[int] = []  # steps of each $batch served
        self.throttled = 0

    def add_app(
        self,
        client_id: str,
        secret: str | None,
        tenant: str,
        roles: tuple[str, ...] = ("Mail.ReadWrite", "Mail-Advanced.ReadWrite.All", "User.Read.All"),
        *,
        certificate: bytes | None = None,
    ) -> None:
        """An app registration with a secret, a certificate (PEM; its key signs assertions), or both."""
        self.oauth.add_app(client_id, secret, tenant, principal=client_id, certificate=certificate)
        self._roles[client_id] = frozenset(roles)

    def add_mailbox(self, address: str, aliases: tuple[str, ...] | list[str] = ()) -> None:
        with self._lock:
            self._mailboxes[address.lower()] = (address, tuple(aliases))
            self._items.setdefault(address.lower(), [])

    def items(self, address: str) -> list[GraphItem]:
        with self._lock:
            return list(self._items[address.lower()])

    def inject(
        self,
        fault: GraphFault | str,
        count: int = 1,
        *,
        operation: str | None = None,
        delay: float = 5.0,
        retry_after: int = 2,
    ) -> None:
        with self._lock:
            self._faults.append(_Scripted(GraphFault(fault), count, operation, delay, retry_after))

    def token_url(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    @property
    def base_url(self) -> str:
        return self.origin

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    # ---- request handling --------------------------------------------------------------------

    def take_fault(self, operation: str) -> _Scripted | None:
        with self._lock:
            for scripted in self._faults:
                if scripted.operation in (None, operation):
                    scripted.remaining -= 1
                    if scripted.remaining <= 0:
                        self._faults.remove(scripted)
                    return scripted
        return None

    def mailbox(self, user: str) -> str:
        """The primary address the path names; aliases are not user ids in Graph."""
        with self._lock:
            found = self._mailboxes.get(unquote(user).lower())
        if found is None:
            raise _Reply(404, "ErrorInvalidUser", f"The requested user '{unquote(user)}' is invalid.")
        return found[0]

    def enter(self, mailbox: str) -> None:
        with self._lock:
            if self._in_flight.get(mailbox, 0) >= MAILBOX_CONCURRENCY:
                self.throttled += 1
                raise _Reply(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": str(self.throttle_retry_after)},
                )
            self._in_flight[mailbox] = self._in_flight.get(mailbox, 0) + 1

    def leave(self, mailbox: str) -> None:
        with self._lock:
            self._in_flight[mailbox] -= 1

    def store(self, item: GraphItem) -> None:
        with self._lock:
            self._items[item.mailbox.lower()].append(item)

    def find(self, mailbox: str, folder: str, conditions: list[tuple[str, str]]) -> list[GraphItem]:
        """Items meeting every condition: ``("internetMessageId", v)`` or ``(property id, v)``."""

        def meets(item: GraphItem, what: str, value: str) -> bool:
            if what == "internetMessageId":
                return item.internet_message_id == value
            return item.extended.get(what) == value

        with self._lock:
            return [
                i
                for i in self._items[mailbox.lower()]
                if i.folder == folder and all(meets(i, w, v) for w, v in conditions)
            ]

    def users_with_proxy(self, proxy: str) -> list[dict[str, Any]]:
        wanted = proxy.lower()
        with self._lock:
            boxes = list(self._mailboxes.values())
        found = []
        for primary, aliases in boxes:
            proxies = [f"SMTP:{primary}", *(f"smtp:{a}" for a in aliases)]
            if wanted in (p.lower() for p in proxies):
                found.append(
                    {
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, primary)),
                        "mail": primary,
                        "userPrincipalName": primary,
                        "proxyAddresses": proxies,
                    }
                )
        return found


def _import_mime(emulator: GraphEmulator, mailbox: str, folder: str, headers: Any, body: bytes) -> GraphItem:
    if not (headers.get("Content-Type") or "").startswith("text/plain"):
        raise _Reply(415, "UnsupportedMediaType", "importMime takes base64 MIME as text/plain")
    try:
        mime = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise _Reply(400, "ErrorMimeContentInvalidBase64String", "The MIME content is not base64.") from None
    if len(mime) > emulator.max_message_size:
        raise _Reply(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
    head = BytesHeaderParser(policy=compat32).parsebytes(mime, headersonly=True)
    if not head.keys():
        raise _Reply(400, "ErrorMimeContentConversionFailed", "The MIME content could not be converted.")
    message_id = head.get("Message-ID")
    return GraphItem(
        str(uuid.uuid4()),
        mailbox,
        folder,
        "import-mime",
        mime,
        {},
        False,
        False,
        str(message_id).strip() if message_id else None,
    )


def _create_json(emulator: GraphEmulator, mailbox: str, folder: str, headers: Any, body: bytes) -> GraphItem:
    if not (headers.get("Content-Type") or "").startswith("application/json"):
        raise _Reply(415, "UnsupportedMediaType", "messages take application/json")
    if len(body) > 4 * 1024 * 1024:
        raise _Reply(413, "RequestEntityTooLarge", "The request body is over the 4 MB limit.")
    try:
        message = json.loads(body)
    except ValueError:
        raise _Reply(400, "RequestBodyRead", "The request body is not JSON.") from None
    unknown = set(message) - JSON_MEMBERS if isinstance(message, dict) else {"<not an object>"}
    if unknown:
        raise _Reply(400, "RequestBodyRead", f"Unknown members {sorted(unknown)} on microsoft.graph.message.")
    for header in message.get("internetMessageHeaders", []):
        if not str(header.get("name", "")).lower().startswith("x-"):
            raise _Reply(400, "InvalidInternetMessageHeader", "Only x- headers may be set on a message.")
    extended = {}
    for prop in message.get("singleValueExtendedProperties", []):
        if not isinstance(prop.get("value"), str):
            raise _Reply(400, "ErrorInvalidExtendedPropertyValue", f"Bad extended property {prop!r}.")
        extended[property_id(str(prop.get("id", "")))] = prop["value"]
    flags = int(extended.get("Integer 0x0E07", "9"))
    return GraphItem(
        str(uuid.uuid4()),
        mailbox,
        folder,
        "json",
        None,
        message,
        bool(message.get("isRead", False)),
        bool(flags & 0x8),
        message.get("internetMessageId"),
        extended,
    )


def property_id(text: str) -> str:
    """An extended property id as Exchange keeps it: tag ids as ``Type 0xTAG``, named ones as
    ``Type {guid} Name name`` (GUID case-insensitive, name as given); 400 when malformed."""
    named = NAMED_ID.match(text)
    if named:
        return f"{named['kind']} {{{named['guid'].lower()}}} Name {named['name']}"
    if EXTENDED_ID.match(text):
        kind, tag = text.split()
        return f"{kind} 0x{int(tag, 16):04X}"
    raise _Reply(400, "ErrorInvalidExtendedPropertyValue", f"Bad extended property id {text!r}.")


def message_filter(text: str) -> list[tuple[str, str]]:
    """The conditions of a ``$filter`` on messages: ``internetMessageId eq '…'`` and/or one
    ``singleValueExtendedProperties/any(ep: ep/id eq '…' and ep/value eq '…')``, joined by
    ``and``; anything else is refused as the emulator does not evaluate it."""
    conditions: list[tuple[str, str]] = []
    for clause in _top_level_and(text):
        by_id, by_property = MESSAGE_ID_CLAUSE.match(clause), PROPERTY_CLAUSE.match(clause)
        if by_id:
            conditions.append(("internetMessageId", by_id["value"].replace("''", "'")))
        elif by_property:
            conditions.append(
                (property_id(by_property["id"].replace("''", "'")), by_property["value"].replace("''", "'"))
            )
        else:
            raise _Reply(
                400,
                "ErrorInvalidUrlQueryFilter",
                "The emulator filters messages on internetMessageId eq '...' and "
                "singleValueExtendedProperties/any(...) only.",
            )
    return conditions


def _top_level_and(text: str) -> list[str]:
    """``text`` split at each `` and `` outside quotes and parentheses."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and text.startswith(" and ", i):
            parts.append(text[start:i])
            start = i = i + 5
            continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _shown(item: GraphItem, select: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": item.id,
        "internetMessageId": item.internet_message_id,
        "subject": item.message.get("subject"),
        "isRead": item.is_read,
        "isDraft": item.is_draft,
    }
    if "internetMessageHeaders" in select:
        if item.mime is not None:
            head = BytesHeaderParser(policy=compat32).parsebytes(item.mime, headersonly=True)
            values["internetMessageHeaders"] = [{"name": n, "value": str(v)} for n, v in head.items()]
        else:
            values["internetMessageHeaders"] = list(item.message.get("internetMessageHeaders", []))
    return {name: values[name] for name in select}


PERMISSIONS = {"importMime": "Mail-Advanced.ReadWrite.All", "users": "User.Read.All"}


def _route_of(method: str, path: str) -> tuple[str, re.Match[str]]:
    for operation, verb, pattern in ROUTES:
        match = pattern.match(path)
        if match and verb == method:
            return operation, match
    raise _Reply(400, "BadRequest", f"{method} {path} is not emulated by the GRAPH EMULATOR")


def answer(
    emulator: GraphEmulator,
    method: str,
    path: str,
    query: dict[str, list[str]],
    headers: Message[str, str],
    body: bytes,
    *,
    in_batch: bool = False,
) -> graph_batch.Answer:
    """One request, inside a batch or not: status, JSON body and headers (never raises)."""
    try:
        status, content = _route(emulator, method, path, query, headers, body, in_batch=in_batch)
        return status, content, {}
    except _Reply as reply:
        error = {"error": {"code": reply.code, "message": reply.text}}
        return reply.status, json.dumps(error).encode(), reply.headers


def _route(
    emulator: GraphEmulator,
    method: str,
    path: str,
    query: dict[str, list[str]],
    headers: Message[str, str],
    body: bytes,
    *,
    in_batch: bool,
) -> tuple[int, bytes]:
    operation, match = _route_of(method, path)
    if operation == "batch" and in_batch:
        raise _Reply(400, "BadRequest", "A batch cannot hold a $batch request.")
    with emulator._lock:
        emulator.requests[operation] = emulator.requests.get(operation, 0) + 1
    auth = headers.get("Authorization") or ""
    client = emulator.oauth.principal(auth[7:]) if auth.startswith("Bearer ") else None
    if client is None:
        raise _Reply(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
    scripted = emulator.take_fault(operation)
    if scripted and scripted.fault not in (GraphFault.SLOW, GraphFault.TIMEOUT_AFTER_STORE):
        status, code, text = _FAULT_ANSWERS[scripted.fault]
        raise _Reply(
            status, code, text, {"Retry-After": str(scripted.retry_after)} if status in (429, 503) else {}
        )
    if operation == "batch":
        return _batch(emulator, match["version"], headers, body)
    needed = PERMISSIONS.get(operation, "Mail.ReadWrite")
    if needed not in emulator._roles.get(client, frozenset()):
        raise _Reply(403, "ErrorAccessDenied", f"Access is denied: the app lacks {needed}.")
    if operation == "users":
        proxy = PROXY_FILTER.match((query.get("$filter") or [""])[0])
        if proxy is None:
            raise _Reply(
                400, "Request_UnsupportedQuery", "The emulator filters users on proxyAddresses only."
            )
        return 200, json.dumps(
            {"value": emulator.users_with_proxy(proxy["value"].replace("''", "'"))}
        ).encode()
    mailbox = emulator.mailbox(match["user"])
    folder = match["folder"].lower()
    if folder != "inbox":
        raise _Reply(404, "ErrorItemNotFound", "The emulator has the inbox folder only.")
    emulator.enter(mailbox)
    try:
        if scripted and scripted.fault is GraphFault.SLOW:
            time.sleep(scripted.delay)
        result = _mail(emulator, operation, mailbox, folder, query, headers, body)
    finally:
        emulator.leave(mailbox)
    if scripted and scripted.fault is GraphFault.TIMEOUT_AFTER_STORE:
        time.sleep(scripted.delay)
    return result


def _batch(
    emulator: GraphEmulator, version: str, headers: Message[str, str], body: bytes
) -> tuple[int, bytes]:
    try:
        steps = graph_batch.parse(
            version, headers.get("Content-Type") or "", body, headers.get("Authorization") or ""
        )
    except graph_batch.BatchRefused as refused:
        raise _Reply(refused.status, refused.code, refused.text) from None
    with emulator._lock:
        emulator.batch_sizes.append(len(steps))

    def one(
        method: str, path: str, query: dict[str, list[str]], step: Message[str, str], data: bytes
    ) -> graph_batch.Answer:
        return answer(emulator, method, path, query, step, data, in_batch=True)

    return 200, graph_batch.run(steps, one)


def _mail(
    emulator: GraphEmulator,
    operation: str,
    mailbox: str,
    folder: str,
    query: dict[str, list[str]],
    headers: Message[str, str],
    body: bytes,
) -> tuple[int, bytes]:
    if operation == "listMessages":
        conditions = message_filter(query["$filter"][0]) if "$filter" in query else []
        select = (query.get("$select") or ["id,internetMessageId"])[0].split(",")
        unknown = set(select) - SELECTABLE
        if unknown:
            raise _Reply(
                400, "RequestBroker--ParseUri", f"Could not find a property named {sorted(unknown)[0]}."
            )
        top = int((query.get("$top") or ["10"])[0])
        found = emulator.find(mailbox, folder, conditions)[:top]
        return 200, json.dumps({"value": [_shown(i, select) for i in found]}).encode()
    build = _import_mime if operation == "importMime" else _create_json
    item = build(emulator, mailbox, folder, headers, body)
    emulator.store(item)
    created = {
        "id": item.id,
        "isDraft": item.is_draft,
        "isRead": item.is_read,
        "internetMessageId": item.internet_message_id,
        "parentFolderId": folder,
    }
    return 201, json.dumps(created).encode()


class _Handler(BaseHTTPRequestHandler):
    emulator: GraphEmulator
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return SERVER_HEADER

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("GRAPH EMULATOR: " + format, *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        emulator = self.emulator
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        token = emulator.oauth.handle(url.path, self.headers.get("Authorization"), body)
        if token is not None:
            self._reply(token[0], token[1])
            return
        self._reply(*answer(emulator, method, url.path, parse_qs(url.query), self.headers, body))

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("GRAPH EMULATOR: client went away before the answer")
