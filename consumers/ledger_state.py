"""What the delivery ledger says about one delivery, and what a worker must do about it.

Pure: the state of one ledger key is a small integer, and ``verdict`` turns it and the
generation of the record in hand into skip / ask / write, so the rules are tested without
Kafka. A record's *generation* is its ``mf-attempts`` header: 0 on the deliver topic, n on
the n-th retry record of a delivery.

States, in the order a delivery goes through them:

* absent: never attempted, or dead-lettered (the entry is removed so a requeue starts afresh);
* ``attempt(g)``: the record of generation g is being written to a target that can be asked.
  Written, and acknowledged, *before* the target write (write-ahead). Found on a later pass it
  means that write may have happened: the target is asked before writing again;
* ``moved(g)``: the attempt failed and the delivery now lives in the retry record of
  generation g. Records of an older generation are stale (the original read again after a
  crash, a retry record written twice) and are skipped, so two records never both deliver;
* ``DELIVERED``: written; every later record of the delivery is skipped.

A dead-lettered delivery's entry is *forgotten*: a kept ``forgotten`` entry, not a tombstone,
because an older pack (below) may still hold the key, and compaction removes a tombstone
after a day while the pack stays.

Entries written together (one attempt batch on one partition) travel as one *pack* record:
``encode_pack`` / ``decode_pack``. A pack's Kafka key is its own, so compaction never merges
it with a single entry; what a key's state is follows the order of the records, as for
single entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum

DELIVERED = -1
State = int | None


def attempt_state(generation: int) -> int:
    return 2 * generation + 1


def moved_state(generation: int) -> int:
    return 2 * generation


class Verdict(StrEnum):
    SKIP_DELIVERED = "skip-delivered"  # the ledger has it delivered
    SKIP_SUPERSEDED = "skip-superseded"  # a newer record of this delivery holds it
    ASK = "ask"  # an attempt without an outcome: ask the target before writing
    WRITE = "write"


def verdict(state: State, generation: int) -> Verdict:
    """What to do with a record of ``generation`` when the ledger holds ``state``."""
    if state is None:
        return Verdict.WRITE
    if state == DELIVERED:
        return Verdict.SKIP_DELIVERED
    recorded = state // 2
    if generation < recorded:
        return Verdict.SKIP_SUPERSEDED
    if state % 2 == 1:
        return Verdict.ASK
    return Verdict.WRITE


def encode(kind: str, generation: int, delivery_id: str, at: str) -> bytes:
    return json.dumps({"state": kind, "gen": generation, "delivery_id": delivery_id, "at": at}).encode()


def encode_pack(kind: str, entries: Iterable[tuple[bytes, int, str]], at: str) -> bytes:
    """Entries of one ``kind`` as (ledger key, generation, delivery id)."""
    rows = [[key.decode(), generation, delivery_id] for key, generation, delivery_id in entries]
    return json.dumps({"state": kind, "at": at, "entries": rows}).encode()


def decode_pack(value: bytes | None) -> list[tuple[bytes, State]]:
    """(ledger key, state) of every entry of a pack; an unreadable pack names no key, so
    its entries read as absent (written again, or asked where the target can be)."""
    try:
        pack = json.loads(value or b"")
        kind = pack.get("state")
        return [(str(key).encode(), _state(kind, int(gen))) for key, gen, _id in pack["entries"]]
    except (ValueError, TypeError, AttributeError, KeyError):
        return []


def decode(value: bytes | None) -> State:
    """The state an entry's value sets; an entry of an older release (no ``state``) is a
    delivery, and an unreadable one counts as an attempt at generation 0 (ask, never skip)."""
    if value is None:
        return None
    try:
        entry = json.loads(value)
        kind = entry.get("state", "delivered")
        generation = int(entry.get("gen", 0))
    except (ValueError, TypeError, AttributeError):
        return attempt_state(0)
    return _state(kind, generation)


def _state(kind: object, generation: int) -> State:
    if kind == "delivered":
        return DELIVERED
    if kind == "moved":
        return moved_state(generation)
    if kind == "forgotten":
        return None
    return attempt_state(generation)
