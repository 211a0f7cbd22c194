"""A raw record the agent was never handed is noticed at the next one.

faust-streaming 0.15.3 was seen handing the route agent raw offsets 1, 2, 3, 5, 5 of a
partition under load: offset 4 never, offset 5 twice, and no gap logged. Offset 4 is never
acked, but Faust's commit then went past it at the next commit (its ``_new_offset`` lets
the first acked offset be one past the committed one) and the mail was lost: chaos run 16
lost nine mails that way. ``offset_gaps`` now holds the commit before such an offset; this
watch stops the worker at once so the partition is read again from there.

The raw topic has no gaps of its own (idempotent, not transactional producers; not
compacted), so within one assignment the agent must see every offset of a partition in
order: a jump forward is a skip. The worker is stopped then, as on a gap, so it reads the
partition again from its commit. Offsets seen again or out of order around a rebalance are
harmless (the dedup table and the ledger keep them single); a rebalance starts afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class SkipWatch:
    """The next offset each raw partition owes the agent; armed by the worker only."""

    def __init__(self) -> None:
        self._on_skip: Callable[[], None] | None = None
        self._next: dict[int, int] = {}

    def arm(self, on_skip: Callable[[], None]) -> None:
        self._on_skip = on_skip

    def rebalanced(self) -> None:
        """A new assignment may start any partition at any committed offset."""
        self._next.clear()

    def saw(self, partition: int, offset: int) -> None:
        expected = self._next.get(partition, offset)
        if offset < expected:
            return  # seen again, or late around a rebalance
        self._next[partition] = offset + 1
        if offset == expected or self._on_skip is None:
            return
        log.error(
            "stream: raw partition %d went from offset %d to %d without the records between: "
            "not committing past them; stopping to read them again",
            partition,
            expected - 1,
            offset,
        )
        on_skip, self._on_skip = self._on_skip, None  # once: the worker is already stopping
        on_skip()
