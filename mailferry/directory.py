"""The directory interface recipient resolution asks: is this address a mailbox, and which?

The stream app depends only on this protocol; the EWS target provides one backed by
ResolveNames, Graph another. Both answer with the *primary* SMTP address, since
impersonating an alias fails.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Directory(Protocol):
    def lookup(self, address: str) -> str | None:
        """Primary SMTP address of the mailbox ``address`` reaches, or None when none does.

        Raises ``TransientError`` when the directory cannot be asked right now.
        """
        ...


class StaticDirectory:
    """A directory from a fixed mapping (tests, and tenants without a live directory)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self._entries = {k.lower(): v for k, v in entries.items()}

    def lookup(self, address: str) -> str | None:
        return self._entries.get(address.lower())


@dataclass(frozen=True)
class LookupDirectory:
    """A directory over one look-up function, uncached: the caller decides the caching."""

    ask: Callable[[str], str | None]

    def lookup(self, address: str) -> str | None:
        return self.ask(address.strip().lower())


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

    A live look-up per message would throttle EWS/Graph, so answers, "no such mailbox" too
    (for ``negative_ttl``), are kept; errors are not, so an outage is asked again next time.
    The EWS and Graph targets and the stream app all use this one cache.
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
