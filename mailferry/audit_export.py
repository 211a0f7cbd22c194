"""``mailferry audit export``: a time range of the audit topic as JSON lines or CSV.

For compliance archives the output must not change shape between releases: the columns are
``COLUMNS`` in that order, times are UTC ISO 8601 with milliseconds, ``details`` is a JSON
object (a JSON string in CSV). Records are written partition by partition in offset order
(the order Kafka keeps per message), streamed: memory does not grow with the range. Every
event of a pack is a row of its own with the pack's partition and offset and its ``index``
in the pack (the last column, added with packing: empty for a plain record, so older rows
read the same).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TextIO

from mailferry.audit import ReadEvent, address, read_events
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.schemas import UnknownSchemaError

Format = Literal["jsonl", "csv"]
COLUMNS = (
    "at",
    "partition",
    "offset",
    "event_id",
    "event",
    "stage",
    "tenant",
    "mailbox_id",
    "message_id",
    "sha256",
    "dedup_key",
    "recipient",
    "details",
    "index",
)


def _row(event: ReadEvent) -> dict[str, Any]:
    partition, offset, *index = address(event)
    row: dict[str, Any] = {name: event.get(name) for name in COLUMNS}
    row |= {
        "at": event["at"].isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "partition": partition,
        "offset": offset,
        "details": dict(sorted(event["details"].items())),
        "index": index[0] if index else None,
    }
    return row


def export_events(
    kafka: KafkaConfig,
    servers: list[str],
    out: TextIO,
    *,
    since: datetime,
    until: datetime,
    tenant: str | None = None,
    fmt: Format = "jsonl",
    on_total: Callable[[int], None] | None = None,
    on_record: Callable[[], None] | None = None,
) -> int:
    """Write the events with a timestamp in [since, until); the number written."""
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    written = 0
    topic = full_name(kafka, AUDIT)
    for record in scan_topic(kafka, servers, topic, since=since, until=until, on_total=on_total):
        if on_record is not None:
            on_record()
        try:
            events = read_events(record)
        except UnknownSchemaError:
            continue
        for event in events:
            if tenant is not None and event["tenant"] != tenant:
                continue
            row = _row(event)
            if writer is None:
                out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            else:
                writer.writerow([json.dumps(row[c]) if c == "details" else row[c] for c in COLUMNS])
            written += 1
    return written
