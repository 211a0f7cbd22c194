"""Giving a partition up cleanly: no attempt of it may still run when its new owner starts.

With two or more deliver workers, a rebalance moves partitions between them. The worker
losing a partition stops taking its records, lets the attempts already writing to a target
finish (those queued but not started are abandoned: the new owner reads them again), and
only then lets the rebalance go on. Otherwise the new owner could ask the target, find
nothing yet, and write a second copy while the old attempt's write lands.

Thread-safe: attempts enter and leave from the target pools' threads; ``close`` is called
from kafka-python's rebalance listener, on the client's IO thread.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable

Part = tuple[str, int]


class Handover:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running: Counter[Part] = Counter()
        self._closed: set[Part] = set()

    def enter(self, part: Part) -> bool:
        """Start an attempt of ``part``; False when the partition is being given up."""
        with self._changed:
            if part in self._closed:
                return False
            self._running[part] += 1
            return True

    def leave(self, part: Part) -> None:
        with self._changed:
            self._running[part] -= 1
            if self._running[part] <= 0:
                del self._running[part]
            self._changed.notify_all()

    def close(self, parts: Iterable[Part], timeout_s: float) -> int:
        """Refuse new attempts of ``parts`` and wait for the running ones; how many still run."""
        wanted = set(parts)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            self._closed |= wanted
            while (left := sum(n for p, n in self._running.items() if p in wanted)) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return left
                self._changed.wait(remaining)
            return 0

    def reopen(self, parts: Iterable[Part]) -> None:
        with self._changed:
            self._closed -= set(parts)

    def running(self) -> int:
        with self._changed:
            return sum(self._running.values())
