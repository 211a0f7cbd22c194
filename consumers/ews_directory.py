"""Directory look-up through EWS ResolveNames (``mailferry.directory.Directory``), cached.

Two traps of ResolveNames shape this module: without the ``smtp:`` prefix it matches only
primary addresses, and its match is a *prefix* match (``smtp:bob@ex`` finds
``bob@example.com``). So every look-up uses the prefix and then keeps only an exact match
on the primary address or one of the contact's listed addresses. Answers (also "no such
mailbox") are cached with a time to live, since recipient resolution asks per message.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from exchangelib.errors import ErrorNameResolutionNoResults
from mailferry.consumers.ews_errors import classify

from mailferry.config.models import Tenant
from mailferry.directory import Directory


def exact_match(address: str, resolutions: Iterable[Any]) -> str | None:
    """Primary SMTP address of the resolution that is exactly ``address``, else None.

    ``resolutions`` are what exchangelib returns with full contact data: (Mailbox, Contact)
    pairs, or an exception instance when nothing matched.
    """
    wanted = address.strip().lower()
    for resolution in resolutions:
        if isinstance(resolution, BaseException):
            continue
        mailbox, contact = resolution if isinstance(resolution, tuple) else (resolution, None)
        primary = getattr(mailbox, "email_address", None)
        if not primary or getattr(mailbox, "routing_type", "SMTP") not in (None, "SMTP"):
            continue
        known = {primary.lower()}
        for entry in getattr(contact, "email_addresses", None) or []:
            email = (entry.email or "").strip()
            if email.lower().startswith("smtp:"):
                email = email[5:]
            known.add(email.lower())
        if wanted in known:
            return str(primary)
    return None


class _TtlCache:
    def __init__(self, max_entries: int) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._max = max_entries

    def get(self, key: str, now: float) -> tuple[bool, str | None]:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None or hit[0] < now:
                return False, None
            self._entries.move_to_end(key)
            return True, hit[1]

    def put(self, key: str, value: str | None, expires: float) -> None:
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class CachedDirectory:
    """A ``Directory`` over any exact-match look-up, with a TTL cache; thread-safe.

    ``ask`` sends one request and returns the primary address or None; it raises classified
    errors (TransientError when the directory cannot be asked now, TenantError on bad
    credentials). The Graph target uses the same cache with its own ``ask``.
    """

    def __init__(
        self,
        ask: Callable[[str], str | None],
        *,
        ttl: float = 3600.0,
        negative_ttl: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ask_server = ask
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache = _TtlCache(max_entries)
        self._clock = clock
        self._pending_lock = threading.Lock()
        self._pending: dict[str, threading.Lock] = {}
        self.lookups = 0  # requests sent to the server, for tests and status

    def lookup(self, address: str) -> str | None:
        key = address.strip().lower()
        hit, value = self._cache.get(key, self._clock())
        if hit:
            return value
        # One request per address even when many threads miss at once (a burst to one mailbox).
        with self._pending_lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            hit, value = self._cache.get(key, self._clock())
            if hit:
                return value
            try:
                self.lookups += 1
                primary = self._ask_server(key)
                ttl = self._ttl if primary else self._negative_ttl
                self._cache.put(key, primary, self._clock() + ttl)
                return primary
            finally:
                with self._pending_lock:
                    self._pending.pop(key, None)


def ews_lookup(protocol_of: Callable[[], Any], *, tenant: str | None = None) -> Callable[[str], str | None]:
    """ResolveNames with the ``smtp:`` prefix and full contact data (the aliases are listed
    only there), then the exact-match check."""

    def ask(address: str) -> str | None:
        try:
            resolutions = list(
                protocol_of().resolve_names([f"smtp:{address}"], return_full_contact_data=True)
            )
        except ErrorNameResolutionNoResults:
            return None
        except Exception as exc:
            raise classify(exc, write=False, tenant=tenant) from exc
        return exact_match(address, resolutions)

    return ask


def directory_for(tenant: Tenant) -> Directory | None:
    """The live directory of a tenant's default target (EWS or Graph), for recipient
    resolution in the stream app; None for targets without a directory (SMTP, Maildir).

    Blocking (exchangelib and httpx are synchronous): call it from a thread, not an event loop.
    """
    target = tenant.target()
    if target.kind == "ews":
        from mailferry.consumers.ews_connect import EwsConnection

        connection = EwsConnection(tenant, target)
        return CachedDirectory(ews_lookup(lambda: connection.protocol, tenant=tenant.id))
    if target.kind == "graph":
        from mailferry.consumers.graph import graph_lookup
        from mailferry.consumers.graph_client import GraphClient

        return CachedDirectory(graph_lookup(GraphClient(target, tenant=tenant.id)))
    return None
