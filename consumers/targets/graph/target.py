"""Microsoft Graph delivery target, for Exchange Online after EWS is switched off.

Two modes, chosen per target in the config:

* ``import-mime`` (Graph beta ``mailFolders/inbox/importMime``): the MIME as it is, stored
  as a received, non-draft item. Full fidelity; needs Mail-Advanced.ReadWrite.All.
* ``json`` (v1.0 ``mailFolders/inbox/messages``): the message converted to a Graph
  ``message`` with PR_MESSAGE_FLAGS = 1 (else it is a draft), the delivery time (0x0E06) and
  the sent time (0x0039); lossy, see docs/targets.md. Bodies over Graph's 4 MB request limit
  are refused rather than half-delivered.

Graph allows 4 concurrent requests per mailbox: a per-mailbox semaphore keeps this target
under it whatever the worker's pool size; a 429 still becomes a TransientError carrying
Retry-After. Aliases are resolved to the primary address first (users by proxyAddresses).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from mailferry.config.models import Tenant
from mailferry.config.targets import GraphTarget
from mailferry.consumers.target import DeliveryItem, DeliveryTarget
from mailferry.consumers.targets.exchange_item import delivery_time, internet_message_id, read_head
from mailferry.consumers.targets.graph.json_message import MAX_REQUEST, to_graph_message
from mailferry.errors import PermanentError, TenantError
from mailferry.exchange.directory import CachedDirectory, graph_lookup
from mailferry.exchange.graph.client import GraphClient

MAILBOX_CONCURRENCY = 4
MARKER_PROPERTY = "String {6b3a1e0c-3f4d-4c1b-9a5e-6d61696c6665} Name MailferryDelivery"  # as ews/marker.py
MARKER_HEADER = "X-Mailferry-Delivery"


class GraphDeliveryTarget:
    """``DeliveryTarget`` writing through Microsoft Graph; safe to share between threads."""

    def __init__(self, tenant: Tenant, target: GraphTarget) -> None:
        self.name = target.name
        self.max_message_size = target.max_message_size
        self.mode = target.mode
        self.tenant = tenant
        self.client = GraphClient(target, tenant=tenant.id)
        self.directory = CachedDirectory(graph_lookup(self.client))
        self._aliases = {k.lower(): v for k, v in tenant.aliases.items()}
        self._slots_lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def _mailbox_slot(self, mailbox: str) -> Iterator[None]:
        with self._slots_lock:
            slot = self._slots.setdefault(mailbox.lower(), threading.BoundedSemaphore(MAILBOX_CONCURRENCY))
        with slot:
            yield

    def primary_address(self, address: str) -> str:
        primary = self.directory.lookup(self._aliases.get(address.lower(), address))
        if primary is None:
            raise PermanentError(
                f"no mailbox has the address {address} (Graph users by proxyAddresses)",
                reason_code="no-such-mailbox",
            )
        return primary

    def _inbox(self, mailbox: str) -> str:
        return f"/users/{quote(mailbox, safe='@')}/mailFolders/inbox"

    def check_credentials(self) -> None:
        """Get a token and read the default mailbox's Inbox: fail fast on credentials and rights."""
        try:
            primary = self.primary_address(self.tenant.default_mailbox)
            with self._mailbox_slot(primary):
                self.client.request(
                    "GET", f"/v1.0{self._inbox(primary)}/messages", write=False, params={"$top": "1"}
                )
        except TenantError:
            raise
        except PermanentError as exc:
            raise TenantError(
                f"start-up check of {self.name} failed for the default mailbox: {exc.message}",
                tenant=self.tenant.id,
                reason_code=exc.reason_code,
            ) from exc

    def deliver(self, item: DeliveryItem) -> None:
        if self.max_message_size is not None and item.size > self.max_message_size:
            raise PermanentError(
                f"message of {item.size} bytes is over the {self.max_message_size}-byte limit of {self.name}",
                reason_code="size-exceeded",
            )
        primary = self.primary_address(item.mailbox)
        raw = item.message_bytes()
        if self.mode == "import-mime":
            raw = f"{MARKER_HEADER}: {item.marker}\r\n".encode() + raw
            path, body, kind = f"/beta{self._inbox(primary)}/importMime", base64.b64encode(raw), "text/plain"
        else:
            message = to_graph_message(raw, delivered=delivery_time(item, read_head(item)))
            message["singleValueExtendedProperties"].append({"id": MARKER_PROPERTY, "value": item.marker})
            body, kind = json.dumps(message).encode(), "application/json"
            if len(body) > MAX_REQUEST:
                raise PermanentError(
                    f"as JSON the message is {len(body)} bytes, over Graph's 4 MB request limit; "
                    "deliver it with the import-mime mode",
                    reason_code="size-exceeded",
                )
            path = f"/v1.0{self._inbox(primary)}/messages"
        item.committing()
        with self._mailbox_slot(primary):
            self.client.request("POST", path, write=True, content=body, content_type=kind)

    def already_delivered(self, item: DeliveryItem) -> bool | None:
        """Is this delivery's copy in the Inbox? Filtered on internetMessageId and the marker:
        as an extended property (JSON mode), or as the ``X-Mailferry-Delivery`` header of the
        imported MIME (import-mime mode, which takes nothing but MIME; None there when the
        message has no Message-ID, since then Exchange makes one up and nothing is indexed)."""
        message_id = internet_message_id(item, read_head(item))
        primary = self.primary_address(item.mailbox)
        clauses = [f"internetMessageId eq {_quoted(message_id)}"] if message_id is not None else []
        params = {"$top": "50"}
        if self.mode == "import-mime":
            if message_id is None:
                return None
            params["$select"] = "id,internetMessageHeaders"
        else:
            clauses.append(
                f"singleValueExtendedProperties/any(ep: ep/id eq {_quoted(MARKER_PROPERTY)}"
                f" and ep/value eq {_quoted(item.marker)})"
            )
            params["$select"] = "id"
        params["$filter"] = " and ".join(clauses)
        with self._mailbox_slot(primary):
            answer = self.client.request(
                "GET", f"/v1.0{self._inbox(primary)}/messages", write=False, params=params
            )
        found = answer.get("value") or []
        if self.mode != "import-mime":
            return bool(found)
        return any(_has_header(message, MARKER_HEADER, item.marker) for message in found)

    def close(self) -> None:
        self.client.close()


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _has_header(message: dict[str, object], name: str, value: str) -> bool:
    headers = message.get("internetMessageHeaders")
    return isinstance(headers, list) and any(
        isinstance(h, dict)
        and str(h.get("name", "")).lower() == name.lower()
        and str(h.get("value", "")).strip() == value
        for h in headers
    )


def create(tenant: Tenant, target: GraphTarget) -> DeliveryTarget:
    """The Graph target of ``tenant`` named by ``target`` (no network I/O until used)."""
    return GraphDeliveryTarget(tenant, target)
