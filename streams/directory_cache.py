"""A TTL cache in front of a directory: a live lookup per message would throttle EWS/Graph.

Negative answers (no such mailbox) are cached too; errors are not, so a directory outage
is retried on the next message instead of being remembered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from mailferry.directory import Directory


class CachedDirectory:
    def __init__(
        self,
        inner: Directory,
        ttl_seconds: float,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def lookup(self, address: str) -> str | None:
        key = address.lower()
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl:
            self.hits += 1
            self._entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        answer = self.inner.lookup(address)
        self._entries[key] = (now, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return answer
