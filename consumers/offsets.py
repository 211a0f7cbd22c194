"""Which offset of each partition may be committed, when records finish out of order.

Records of one partition are handed to several thread pools and finish in any order; an
offset may be committed only when every record before it has its outcome recorded
(at-least-once). A packed record (``mailferry.packing``) holds several deliveries, each
worked on its own: its offset counts as in flight until the last of them is settled.
Pure bookkeeping, no Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    position: int | None = None  # next offset to dispatch (None: nothing seen yet)
    in_flight: dict[int, int] = field(default_factory=dict)  # offset: deliveries not settled yet
    committed: int | None = None

    def commit_point(self) -> int | None:
        """The offset to commit (the first one whose outcome is not recorded yet)."""
        if self.in_flight:
            return min(self.in_flight)
        return self.position


class OffsetTracker:
    """Per (topic, partition): dispatched, finished, and what was last committed."""

    def __init__(self) -> None:
        self._parts: dict[tuple[str, int], PartitionOffsets] = {}

    def dispatched(self, topic: str, partition: int, offset: int, items: int = 1) -> None:
        """The record at ``offset`` is being worked: ``items`` deliveries, each finished once."""
        part = self._parts.setdefault((topic, partition), PartitionOffsets())
        part.in_flight[offset] = part.in_flight.get(offset, 0) + items
        part.position = offset + 1

    def skipped(self, topic: str, partition: int, offset: int) -> None:
        """A record needing no work (undecodable and dead-lettered inline, say)."""
        part = self._parts.setdefault((topic, partition), PartitionOffsets())
        part.position = offset + 1

    def rewound(self, topic: str, partition: int, offset: int) -> None:
        """The consumer seeks back to ``offset`` (a retry record not due yet)."""
        part = self._parts.setdefault((topic, partition), PartitionOffsets())
        part.position = offset

    def finished(self, topic: str, partition: int, offset: int) -> None:
        """One delivery of the record at ``offset`` is settled."""
        part = self._parts.get((topic, partition))
        if part is None or offset not in part.in_flight:
            return
        part.in_flight[offset] -= 1
        if part.in_flight[offset] <= 0:
            del part.in_flight[offset]

    def position(self, topic: str, partition: int) -> int:
        """Next offset this process has not dispatched yet (0 for an unknown partition)."""
        part = self._parts.get((topic, partition))
        return part.position if part is not None and part.position is not None else 0

    def is_tracked(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._parts

    def in_flight(self, topic: str | None = None, partition: int | None = None) -> int:
        return sum(
            sum(p.in_flight.values())
            for (t, n), p in self._parts.items()
            if (topic is None or t == topic) and (partition is None or n == partition)
        )

    def to_commit(self) -> dict[tuple[str, int], int]:
        """Commit points that moved since the last call to ``committed``."""
        out = {}
        for key, part in self._parts.items():
            point = part.commit_point()
            if point is not None and point != part.committed:
                out[key] = point
        return out

    def committed(self, points: dict[tuple[str, int], int]) -> None:
        for key, point in points.items():
            if key in self._parts:
                self._parts[key].committed = point

    def forget(self, keys: list[tuple[str, int]]) -> None:
        """Partitions taken away by a rebalance; their late outcomes are ignored."""
        for key in keys:
            self._parts.pop(key, None)
