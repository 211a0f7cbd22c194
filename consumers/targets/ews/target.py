"""EWS delivery target (exchangelib): one received, unread item in the recipient's Inbox.

CreateItem with ``MessageDisposition=SaveOnly`` from the raw MIME, PR_MESSAGE_FLAGS = 1 (not
a draft), PR_MESSAGE_DELIVERY_TIME from the message, IsRead = false, through one service
account that impersonates each mailbox (on-premises NTLM/basic, or app-only OAuth2 for
Exchange Online). Aliases are resolved to the primary address first: impersonating an
alias fails. Messages above the target's ``stream_threshold`` go through ``stream``
(the same CreateItem with its MIME streamed, bounded memory); smaller ones through plain
exchangelib. exchangelib is synchronous; the worker calls ``deliver`` from a bounded thread
pool and this class is safe to share between those threads.

Batches (issue 14): the small messages of a batch for one mailbox go in one CreateItem with
several items (up to ``BATCH_ITEMS`` and ``BATCH_BYTES``). Exchange answers per item, so
each message keeps its own outcome; the write-ahead entries of a request's items are
recorded, with one wait, before it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from exchangelib import EWSDateTime
from exchangelib.items import SAVE_ONLY

from mailferry.config.models import Tenant
from mailferry.config.targets import EwsTarget
from mailferry.consumers.target import Committing, DeliveryItem, DeliveryTarget, Outcome
from mailferry.consumers.targets.ews.items import MESSAGE_FLAGS_DELIVERED, InboxMessage
from mailferry.consumers.targets.ews.marker import find
from mailferry.consumers.targets.ews.stream import StreamedMessage, create_streamed
from mailferry.consumers.targets.exchange_item import delivery_time, internet_message_id, read_head
from mailferry.errors import MailferryError, PermanentError, TenantError
from mailferry.exchange.directory import CachedDirectory, ews_lookup
from mailferry.exchange.ews.connect import EwsConnection
from mailferry.exchange.ews.errors import classify

log = logging.getLogger(__name__)
BATCH_ITEMS = 20  # items per CreateItem
BATCH_BYTES = 8 * 1024 * 1024  # MIME per CreateItem, below Exchange's default request limits


class EwsDeliveryTarget:
    """``DeliveryTarget`` writing through Exchange Web Services."""

    def __init__(self, tenant: Tenant, target: EwsTarget) -> None:
        self.name = target.name
        self.max_message_size = target.max_message_size
        self.stream_threshold = target.stream_threshold
        self.tenant = tenant
        self.connection = EwsConnection(tenant, target)
        self.directory = CachedDirectory(ews_lookup(lambda: self.connection.protocol, tenant=tenant.id))
        self._aliases = {k.lower(): v for k, v in tenant.aliases.items()}

    def primary_address(self, address: str) -> str:
        """The mailbox's primary SMTP address; PermanentError when no mailbox has ``address``."""
        mapped = self._aliases.get(address.lower(), address)
        primary = self.directory.lookup(mapped)
        if primary is None:
            raise PermanentError(
                f"no mailbox has the address {address} (EWS ResolveNames, exact match)",
                reason_code="no-such-mailbox",
            )
        return primary

    def check_credentials(self) -> None:
        """Log in, detect the version once, and impersonate the default mailbox: fail fast."""
        try:
            _ = self.connection.protocol.version
            primary = self.primary_address(self.tenant.default_mailbox)
            _ = self.connection.account(primary).inbox
        except PermanentError as exc:
            if isinstance(exc, TenantError):
                raise
            raise TenantError(
                f"start-up check of {self.name} failed for the default mailbox: {exc.message}",
                tenant=self.tenant.id,
                reason_code=exc.reason_code,
            ) from exc
        except MailferryError:
            raise
        except Exception as exc:
            error = classify(exc, write=False, tenant=self.tenant.id)
            if isinstance(error, PermanentError) and not isinstance(error, TenantError):
                error = TenantError(error.message, tenant=self.tenant.id, reason_code=error.reason_code)
            raise error from exc

    def deliver(self, item: DeliveryItem) -> None:
        if self.max_message_size is not None and item.size > self.max_message_size:
            raise PermanentError(
                f"message of {item.size} bytes is over the {self.max_message_size}-byte limit of {self.name}",
                reason_code="size-exceeded",
            )
        head = read_head(item)
        primary = self.primary_address(item.mailbox)
        try:
            account = self.connection.account(primary)
            inbox = account.inbox
        except Exception as exc:
            raise classify(exc, write=False, tenant=self.tenant.id) from exc
        delivered_at = delivery_time(item, head)
        if item.size > self.stream_threshold:
            streamed = StreamedMessage.of(item, delivered_at, item.marker)
            send: Callable[[], list[Any]] = partial(create_streamed, account, inbox, streamed)
        else:
            message = InboxMessage(
                account=account,
                folder=inbox,
                mime_content=item.message_bytes(),
                is_read=False,
                mf_message_flags=MESSAGE_FLAGS_DELIVERED,
                mf_delivery_time=EWSDateTime.from_datetime(delivered_at),
                mf_delivery_marker=item.marker,
            )
            send = partial(account.bulk_create, folder=inbox, items=[message], message_disposition=SAVE_ONLY)
        item.committing()
        try:
            results = send()
        except Exception as exc:
            raise classify(exc, write=True, tenant=self.tenant.id) from exc
        for result in results:
            if isinstance(result, BaseException):
                raise classify(result, write=True, tenant=self.tenant.id) from result
        log.debug("delivered %s to %s via EWS", item.dedup_key, primary)

    def deliver_batch(self, items: Sequence[DeliveryItem], committing: Committing) -> list[Outcome]:
        """Per mailbox, its small messages in CreateItem requests of several items; a large
        one (streamed) or one over the limit on its own."""
        outcomes: list[Outcome] = [None] * len(items)
        requests: dict[str, list[list[int]]] = {}
        for index, item in enumerate(items):
            alone = item.size > self.stream_threshold or (
                self.max_message_size is not None and item.size > self.max_message_size
            )
            if alone:
                try:
                    self.deliver(item)
                except Exception as exc:
                    outcomes[index] = exc
                continue
            chunks = requests.setdefault(item.mailbox.lower(), [[]])
            room = sum(items[i].size for i in chunks[-1]) + item.size <= BATCH_BYTES
            if len(chunks[-1]) >= BATCH_ITEMS or not room:
                chunks.append([])
            chunks[-1].append(index)
        for chunks in requests.values():
            for chunk in chunks:
                for index, outcome in zip(
                    chunk, self._create([items[i] for i in chunk], committing), strict=True
                ):
                    outcomes[index] = outcome
        return outcomes

    def _create(self, items: list[DeliveryItem], committing: Committing) -> list[Outcome]:
        """One CreateItem of ``items`` (one mailbox); an error of the whole request is each item's."""
        outcomes: list[Outcome] = [None] * len(items)
        try:
            primary = self.primary_address(items[0].mailbox)
            account = self.connection.account(primary)
            inbox = account.inbox
        except MailferryError as exc:
            return [exc] * len(items)
        except Exception as exc:
            return [classify(exc, write=False, tenant=self.tenant.id)] * len(items)
        sending: list[int] = []
        messages = []
        for index, item in enumerate(items):
            try:
                messages.append(
                    InboxMessage(
                        account=account,
                        folder=inbox,
                        mime_content=item.message_bytes(),
                        is_read=False,
                        mf_message_flags=MESSAGE_FLAGS_DELIVERED,
                        mf_delivery_time=EWSDateTime.from_datetime(delivery_time(item, read_head(item))),
                        mf_delivery_marker=item.marker,
                    )
                )
                sending.append(index)
            except Exception as exc:
                outcomes[index] = exc
        if not sending:
            return outcomes
        committing([items[i] for i in sending])
        try:
            results = account.bulk_create(folder=inbox, items=messages, message_disposition=SAVE_ONLY)
        except Exception as exc:
            error = classify(exc, write=True, tenant=self.tenant.id)
            results = [error] * len(sending)
        for index, result in zip(sending, results, strict=True):
            if isinstance(result, MailferryError):
                outcomes[index] = result
            elif isinstance(result, BaseException):
                outcomes[index] = classify(result, write=True, tenant=self.tenant.id)
        log.debug("CreateItem of %d items for %s", len(sending), primary)
        return outcomes

    def already_delivered(self, item: DeliveryItem) -> bool:
        """FindItem in the Inbox on InternetMessageId and mailferry's marker (``marker``)."""
        message_id = internet_message_id(item, read_head(item))
        try:
            inbox = self.connection.account(self.primary_address(item.mailbox)).inbox
            return find(inbox, message_id, item.marker)
        except MailferryError:
            raise
        except Exception as exc:
            raise classify(exc, write=False, tenant=self.tenant.id) from exc

    def close(self) -> None:
        self.connection.close()


def create(tenant: Tenant, target: EwsTarget) -> DeliveryTarget:
    """The EWS target of ``tenant`` named by ``target`` (no network I/O until used)."""
    return EwsDeliveryTarget(tenant, target)
