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

A partition the group never committed (a new deployment, a new partition) has no committed
offset to compare with, and Faust's check is skipped there: a skip of its first records was
committed past. Its reading starts where its log starts (``auto_offset_reset`` earliest), so
after each assignment (``Consumer.perform_seek``, where Faust learns the committed offsets)
the log start of every raw partition is asked too, and the commit waits for the later of
the two. Retention can delete records no one has read: a gap wholly below the log start is
gone, not skipped, and is left to Faust; a commit older than the log start is read on from
there instead of stopping the worker at every restart. Records deleted between that
question and the consumer's first fetch look like a skip: the worker stops once and asks
again.

A record whose processing ends after its partition was revoked is still acknowledged (Faust
has dropped the partition's committed offset by then). Faust discards commits for partitions
outside the assignment anyway; the guard returns nothing for them either, instead of taking
the late acknowledgement for a skip and stopping the worker (chaos run 19 saw that needless
restart).

Patches three names of Faust (checked by tests/stream/test_offset_gaps.py; faust-streaming
is bounded in pyproject.toml).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_gapless: set[str] = set()
_on_gap: list[Callable[[], None]] = []
_log_start: WeakKeyDictionary[Any, dict[Any, int]] = WeakKeyDictionary()
_original = Consumer._add_gap
_original_new_offset = Consumer._new_offset
_original_perform_seek = Consumer.perform_seek
PATCHED = ("_add_gap", "_new_offset", "perform_seek")


async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    start = _log_start.get(self, {}).get(tp)
    if tp.topic not in _gapless or (start is not None and offset_to <= start):
        await _original(self, tp, offset_from, offset_to)  # not raw, or deleted by retention
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
    if tp.topic in _gapless and (acked := self._acked[tp]):
        if tp not in self.assignment():
            return None  # acked after it was revoked: not ours to commit (Faust discards it too)
        first = _first_to_process(self._committed_offset[tp], _log_start.get(self, {}).get(tp))
        if first is None or min(acked) > first:
            log.error(
                "stream: %s[%d] offset %s was never processed, later ones were: "
                "not committing past it; stopping to read it again",
                tp.topic,
                tp.partition,
                "(no commit, log start unknown)" if first is None else first,
            )
            _stop()
            return None
    offset: int | None = _original_new_offset(self, tp)
    return offset


def _first_to_process(committed: int | None, log_start: int | None) -> int | None:
    """The committed offset, or where the partition's log starts when that is later
    (never committed, or deleted past the commit by retention); None when neither is known."""
    known = [offset for offset in (committed, log_start) if offset is not None]
    return max(known) if known else None


async def _perform_seek(self: Any) -> None:
    await _original_perform_seek(self)
    raw = [tp for tp in self.assignment() if tp.topic in _gapless]
    starts = await self.earliest_offsets(*raw) if raw else {}
    _log_start[self] = {tp: offset for tp, offset in starts.items() if offset is not None}


def _stop() -> None:
    while _on_gap:
        _on_gap.pop()()  # once: the worker is already stopping


def refuse_gaps(topics: set[str], on_gap: Callable[[], None]) -> None:
    """In ``topics`` a gap is a skipped record: never commit past it, call ``on_gap`` (once)."""
    _gapless.update(topics)
    _on_gap[:] = [on_gap]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
