"""Microsoft Graph delivery target, for Exchange Online after EWS is switched off.

Two modes, chosen per target in the config:

* ``import-mime`` (Graph beta ``mailFolders/inbox/importMime``): the MIME as it is, stored
  as a received, non-draft item. Full fidelity; needs Mail-Advanced.ReadWrite.All.
* ``json`` (v1.0 ``mailFolders/inbox/messages``): the message converted to a Graph
  ``message`` with PR_MESSAGE_FLAGS = 1 (else it is a draft), the delivery time (0x0E06) and
  the sent time (0x0039); lossy, see docs/targets.md. Bodies over Graph's 4 MB request limit
  are refused rather than half-delivered.

Graph allows 4 concurrent requests per mailbox: per-mailbox slots (``slots``) keep this
target under it whatever the worker's pool size; a 429 still becomes a TransientError
carrying Retry-After. Aliases are resolved to the primary address first (users by
proxyAddresses).

Batches (issue 14): the messages of a worker batch go in JSON ``$batch`` requests of up to
20 per mailbox (``batch``); Graph answers per step, so each message keeps its own outcome
through the same error table, and the write-ahead entries of a request's messages are
recorded, with one wait, before it is sent. A $batch does not mix mailboxes: it holds that
mailbox's slots while Graph runs its steps, four at a time.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from mailferry.config.models import Tenant
from mailferry.config.targets import GraphTarget
from mailferry.consumers.target import Committing, DeliveryItem, DeliveryTarget, Outcome
from mailferry.consumers.targets.exchange_item import delivery_time, internet_message_id, read_head
from mailferry.consumers.targets.graph import batch
from mailferry.consumers.targets.graph.json_message import MAX_REQUEST, to_graph_message
from mailferry.consumers.targets.graph.slots import MailboxSlots
from mailferry.errors import MailferryError, OperatorError, PermanentError, TenantError
from mailferry.exchange.directory import CachedDirectory, graph_lookup
from mailferry.exchange.graph.client import GraphClient

MAILBOX_CONCURRENCY = 4
MARKER_PROPERTY = "String {6b3a1e0c-3f4d-4c1b-9a5e-6d61696c6665} Name MailferryDelivery"  # as ews/marker.py
MARKER_HEADER = "X-Mailferry-Delivery"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Payload:
    mailbox: str  # primary address
    version: str  # "v1.0" or "beta"
    url: str  # relative to the version
    content: bytes
    content_type: str


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
        self._slots = MailboxSlots(MAILBOX_CONCURRENCY)

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
            with self._slots.hold(primary):
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

    def _payload(self, item: DeliveryItem) -> _Payload:
        """The request that creates ``item``: its mailbox, API version, URL and body."""
        if self.max_message_size is not None and item.size > self.max_message_size:
            raise PermanentError(
                f"message of {item.size} bytes is over the {self.max_message_size}-byte limit of {self.name}",
                reason_code="size-exceeded",
            )
        primary = self.primary_address(item.mailbox)
        raw = item.message_bytes()
        if self.mode == "import-mime":
            raw = f"{MARKER_HEADER}: {item.marker}\r\n".encode() + raw
            return _Payload(
                primary, "beta", f"{self._inbox(primary)}/importMime", base64.b64encode(raw), "text/plain"
            )
        message = to_graph_message(raw, delivered=delivery_time(item, read_head(item)))
        message["singleValueExtendedProperties"].append({"id": MARKER_PROPERTY, "value": item.marker})
        body = json.dumps(message).encode()
        if len(body) > MAX_REQUEST:
            raise PermanentError(
                f"as JSON the message is {len(body)} bytes, over Graph's 4 MB request limit; "
                "deliver it with the import-mime mode",
                reason_code="size-exceeded",
            )
        return _Payload(primary, "v1.0", f"{self._inbox(primary)}/messages", body, "application/json")

    def deliver(self, item: DeliveryItem) -> None:
        self._send(item, self._payload(item))

    def _send(self, item: DeliveryItem, payload: _Payload) -> None:
        item.committing()
        with self._slots.hold(payload.mailbox):
            self.client.request(
                "POST",
                f"/{payload.version}{payload.url}",
                write=True,
                content=payload.content,
                content_type=payload.content_type,
            )

    def deliver_batch(self, items: Sequence[DeliveryItem], committing: Committing) -> list[Outcome]:
        """Per mailbox, the messages in $batch requests of up to 20 (``graph.batch``); one
        too large for a batch, or a batch of one, as a request of its own. An operator
        error (credentials, permissions) stops the batch, as in ``deliver_each``."""
        outcomes: dict[int, Outcome] = {}
        steps: dict[tuple[str, str], list[batch.Step]] = {}
        for index, item in enumerate(items):
            try:
                payload = self._payload(item)
                one = batch.step(index, payload.url, payload.content_type, payload.content)
                if len(items) == 1 or not batch.fits_alone(one):
                    self._send(item, payload)
                    outcomes[index] = None
                    continue
            except Exception as exc:
                outcomes[index] = exc
                if isinstance(exc, OperatorError):
                    return _stopped(outcomes, len(items), exc)
                continue
            steps.setdefault((payload.mailbox, payload.version), []).append(one)
        for (mailbox, version), planned in steps.items():
            for chunk in batch.chunks(planned):
                answered = self._send_batch(mailbox, version, chunk, items, committing)
                outcomes.update(answered)
                stop = next((o for o in answered.values() if isinstance(o, OperatorError)), None)
                if stop is not None:
                    return _stopped(outcomes, len(items), stop)
        return [outcomes[i] for i in range(len(items))]

    def _send_batch(
        self,
        mailbox: str,
        version: str,
        chunk: list[batch.Step],
        items: Sequence[DeliveryItem],
        committing: Committing,
    ) -> dict[int, Outcome]:
        """One $batch for ``mailbox``; it holds as many of the mailbox's slots as Graph runs
        its steps at once, so the steps are not throttled by this target's other requests."""
        committing([items[s.index] for s in chunk])
        try:
            with self._slots.hold(mailbox, min(len(chunk), MAILBOX_CONCURRENCY)):
                answer = self.client.request(
                    "POST",
                    f"/{version}/$batch",
                    write=True,
                    content=batch.request_body(chunk),
                    content_type="application/json",
                )
        except MailferryError as exc:
            return {s.index: exc for s in chunk}
        log.debug("$batch of %d messages for %s", len(chunk), mailbox)
        return dict(batch.verdicts(answer, chunk, tenant=self.tenant.id))

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
        with self._slots.hold(primary):
            answer = self.client.request(
                "GET", f"/v1.0{self._inbox(primary)}/messages", write=False, params=params
            )
        found = answer.get("value") or []
        if self.mode != "import-mime":
            return bool(found)
        return any(_has_header(message, MARKER_HEADER, item.marker) for message in found)

    def close(self) -> None:
        self.client.close()


def _stopped(outcomes: dict[int, Outcome], count: int, error: OperatorError) -> list[Outcome]:
    """The messages not tried yet get ``error`` too: parked with the tenant, not sent to a
    server that refuses it."""
    return [outcomes.get(i, error) for i in range(count)]


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
