"""No offset is committed past a record the stream never processed.

Faust takes a gap in the offsets it reads from a partition for records that cannot exist
(compacted away, transaction markers) and counts them as processed
(``Consumer._add_gap``): the next commit goes past them. Around a rebalance Faust can also
hand the agent a record prefetched before it, out of order (faust-streaming issues 216 and
221), which looks the same: the chaos suite lost a raw record that way (``chaos.raw``
partition 1, offset 21 never routed, offsets 20 and 22 routed, commit 20 -> 23).

The stream's input topic (raw) has no such gaps: its producers are idempotent, not
transactional, and it is not compacted. There a gap means a record was skipped,
so it is not counted as processed: the commit stops before it, and the worker is stopped
(gracefully; it commits only what it did process) so it reads the partition again from
there when it comes back. Offsets read again are caught by the dedup table and the
delivery ledger.

A record the agent was never handed, with no gap logged (``streams/skips.py``), is caught
at the commit: Faust's ``Consumer._new_offset`` lets the first processed offset be one past
the committed one (``min(acked) - committed > 1`` refuses only two or more missing), so it
committed past such a record at its next commit, and the mail was lost (chaos run 16:
``chaos.raw[0]`` offset 86 and ``chaos.raw[2]`` offset 84 never routed, commits past both).
For the raw topic the commit now waits until the offset right after the committed one was
processed, and the worker is stopped to read it again.

Patches two names of Faust (checked by tests/stream/test_offset_gaps.py; faust-streaming
is bounded in pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_gapless: set[str] = set()
_on_gap: list[Callable[[], None]] = []
_original = Consumer._add_gap
_original_new_offset = Consumer._new_offset
PATCHED = ("_add_gap", "_new_offset")


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    if tp.topic not in _gapless:
        await _original(self, tp, offset_from, offset_to)
        return
    log.error(
        "stream: %s[%d] skipped offsets %d-%d (a record prefetched before a rebalance): "
        "not committing past them; stopping to read them again",
        tp.topic,
        tp.partition,
        offset_from,
        offset_to - 1,
    )
    _stop()


def _new_offset(self: Any, tp: Any) -> int | None:
    if tp.topic in _gapless:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and min(acked) > committed:
            log.error(
                "stream: %s[%d] offset %d was never processed, later ones were: "
                "not committing past it; stopping to read it again",
                tp.topic,
                tp.partition,
                committed,
            )
            _stop()
            return None
    offset: int | None = _original_new_offset(self, tp)
    return offset


def _stop() -> None:
    while _on_gap:
        _on_gap.pop()()  # once: the worker is already stopping


def refuse_gaps(topics: set[str], on_gap: Callable[[], None]) -> None:
    """In ``topics`` a gap is a skipped record: never commit past it, call ``on_gap`` (once)."""
    _gapless.update(topics)
    _on_gap[:] = [on_gap]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
