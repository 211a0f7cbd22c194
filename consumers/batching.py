"""How the records of one poll are cut into batches for the targets (pure, no I/O).

A batch holds records of one partition for one (tenant, target, mailbox): its owner is the
owner of that partition, so a rebalance hands over whole batches, and batches of different
mailboxes run in parallel. An EWS batch is one CreateItem request, so a batch takes about
as long as one message did and a revoked partition's running batches finish within the
hand-over time (``worker.REVOKE_DRAIN_S``). A record whose message is a
blob reference (a large message) is a batch of its own, so memory stays bounded by
``batch_size`` small messages plus one large one. Within a batch each ledger key is
attempted once per round: the second copy of a delivery (a replayed record, an original
and its retry record) waits for the first copy's outcome and is then skipped by the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# per target kind, how many messages one batch may hold; kinds not named write one by one
BATCH_SIZES = {"maildir": 256, "ews": 20, "graph": 20}


def batch_size(kind: str) -> int:
    return BATCH_SIZES.get(kind, 1)


def cut(items: Iterable[T], limit: int, *, alone: Callable[[T], bool]) -> list[list[T]]:
    """``items`` in order, in batches of at most ``limit``; an item for which ``alone`` is
    true gets a batch of its own."""
    out: list[list[T]] = []
    current: list[T] = []
    for item in items:
        if alone(item):
            out.append([item])
            continue
        current.append(item)
        if len(current) >= max(1, limit):
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def rounds(keys: list[K]) -> list[list[int]]:
    """Indexes of ``keys`` in rounds where no key appears twice, first copies first."""
    out: list[list[int]] = []
    seen_in: dict[K, int] = {}
    for index, key in enumerate(keys):
        level = seen_in.get(key, -1) + 1
        seen_in[key] = level
        if level == len(out):
            out.append([])
        out[level].append(index)
    return out
