"""Graph's per-mailbox concurrency (4 requests at once per app and mailbox), kept on our side.

A request takes one of the mailbox's slots; a ``$batch`` takes as many as Graph runs of its
steps at once (up to 4), so a batch and single requests for the same mailbox never add up
to more than Graph allows, whatever the worker's pool size. Slots of one mailbox are shared
by every thread of the target.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class MailboxSlots:
    def __init__(self, per_mailbox: int) -> None:
        self.per_mailbox = per_mailbox
        self._free: dict[str, int] = {}
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, mailbox: str, count: int = 1) -> Iterator[None]:
        """Wait until ``count`` of ``mailbox``'s slots are free, hold them for the block."""
        key, count = mailbox.lower(), max(1, min(count, self.per_mailbox))
        with self._changed:
            self._changed.wait_for(lambda: self._free.get(key, self.per_mailbox) >= count)
            self._free[key] = self._free.get(key, self.per_mailbox) - count
        try:
            yield
        finally:
            with self._changed:
                self._free[key] += count
                self._changed.notify_all()
