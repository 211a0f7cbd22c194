"""What a fetch pass needs from its worker, and what it reports back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailferry.blobs import BlobStore
from mailferry.producers.access import TokenProvider
from mailferry.producers.delivery_watch import DeliveryWatch, K
from mailferry.producers.publish import Publisher
from mailferry.schemas.records import FetchState


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FetchContext:
    publisher: Publisher
    blobs: BlobStore
    inline_threshold: int
    tokens: TokenProvider = field(default_factory=TokenProvider)
    confirm_timeout: float = 60.0
    now: Callable[[], datetime] = _utcnow
    deliveries: DeliveryWatch | None = None  # needed by sources with delete_when = "delivered"

    def delivered(self, tenant: str, mailbox: str, entries: Mapping[K, FetchState]) -> list[K]:
        """``DeliveryWatch.delivered``; nothing counts as delivered without a watch."""
        if self.deliveries is None:
            return []
        return self.deliveries.delivered(tenant, mailbox, entries)


@dataclass
class PassResult:
    """Counts of one pass, for the worker status and the tests."""

    fetched: int = 0
    bytes: int = 0
    deleted: int = 0
    moved: int = 0
    skipped: int = 0
    errors: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: PassResult) -> None:
        self.fetched += other.fetched
        self.bytes += other.bytes
        self.deleted += other.deleted
        self.moved += other.moved
        self.skipped += other.skipped
        self.errors += other.errors
        self.notes += other.notes
