"""``mailferry replay``: re-run raw records of a time range through the pipeline.

Raw records are retained (the audit window), so a batch can be delivered again after a
fix: records are found by timestamp (``offsets_for_times``) and published again, marked
with where they came from. With ``bypass_dedup`` the stream delivers them even to
recipients that already have them; without it, only what never got through is delivered.
They go out packed, as the fetcher's and the import's do (``mailferry.raw_sends``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mailferry.audit import audit_event
from mailferry.blobs import open_blob_store
from mailferry.config import MailferryConfig
from mailferry.errors import ConfigError
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, RAW, full_name
from mailferry.packing import origin_of
from mailferry.raw_sends import RawSends, make_producer, pack_limit, partition_count
from mailferry.schemas import UnknownSchemaError
from mailferry.schemas.records import RAW_MESSAGES, RawMessage, unpack_raw_messages
from mailferry.shard import shard_of_record

INF = float("inf")  # a pack closes when full or at a confirm: nothing waits on a replay's latency
CONFIRM_EVERY = 1000  # records sent before waiting: bounds the futures held and what a failure leaves


@dataclass
class ReplayReport:
    matched: int = 0
    bytes: int = 0
    undecodable: int = 0
    mailboxes: dict[str, int] = field(default_factory=dict)
    replayed: int = 0  # acknowledged by Kafka, with their audit events


def replay(
    config: MailferryConfig,
    servers: list[str],
    *,
    tenant: str,
    since: datetime,
    until: datetime,
    mailbox: str | None = None,
    bypass_dedup: bool = False,
    target: str | None = None,
    dry_run: bool = False,
    on_record: Callable[[], None] | None = None,
) -> ReplayReport:
    if until <= since:
        raise ConfigError(f"--to ({until.isoformat()}) must be after --from ({since.isoformat()})")
    try:
        tenant_config = config.tenant(tenant)
    except KeyError:
        raise ConfigError(f"tenant {tenant!r} is not in the configuration") from None
    if target is not None and target not in {t.name for t in tenant_config.targets}:
        raise ConfigError(f"tenant {tenant!r} has no target {target!r}")
    raw_topic = full_name(config.kafka, RAW)
    report = ReplayReport()
    producer = None if dry_run else make_producer(config, servers)
    # a record written before raw was sharded carries its mailbox as key: the shard is
    # worked out again, so the replayed copy meets the dedup table that knows the message
    blobs = None if dry_run else open_blob_store(config, servers)
    sends: ConfirmedSends[int] | None = None
    packed: RawSends[int] | None = None  # mails packed as the fetcher packs them
    try:
        if producer is not None:
            sends = ConfirmedSends(producer)
            packed = RawSends(sends, raw_topic, partition_count(producer, raw_topic), pack_limit(config), INF)
        for origin, value in _mails(
            scan_topic(config.kafka, servers, raw_topic, since=since, until=until), report
        ):
            if value["tenant"] != tenant or (mailbox is not None and value["mailbox_id"] != mailbox):
                continue
            report.matched += 1
            report.bytes += value["size"]
            report.mailboxes[value["mailbox_id"]] = report.mailboxes.get(value["mailbox_id"], 0) + 1
            if on_record:
                on_record()
            if sends is None or packed is None:
                continue
            value |= {"replay_of": origin, "bypass_dedup": bypass_dedup, "target_override": target}
            key = shard_of_record(value, blobs)
            packed.add(key, RAW_MESSAGES.encode(value), tag=report.matched)
            audit_key, event = audit_event(
                "replayed",
                stage="replay",
                tenant=tenant,
                mailbox_id=value["mailbox_id"],
                sha256=value["sha256"],
                details={"origin": origin, "bypass_dedup": str(bypass_dedup), "target": target or ""},
            )
            sends.then(report.matched, full_name(config.kafka, AUDIT), key=audit_key, value=event)
            if len(sends) >= CONFIRM_EVERY:
                packed.flush()
                report.replayed += sends.confirm("records to replay")
        if sends is not None and packed is not None:
            packed.flush()
            report.replayed += sends.confirm("records to replay")
    finally:
        if producer is not None:
            producer.close()
        if blobs is not None:
            blobs.close()
    return report


def _mails(records: Iterable[Any], report: ReplayReport) -> Iterator[tuple[str, RawMessage]]:
    """(origin, mail) of every mail in ``records``: a packed record holds several, each
    addressed by (offset, index); what cannot be decoded is counted and skipped."""
    for record in records:
        try:
            mails = unpack_raw_messages(record.value)
        except UnknownSchemaError:
            report.undecodable += 1
            continue
        base = f"{record.topic}/{record.partition}/{record.offset}"
        for index, mail in enumerate(mails):
            yield origin_of(base, index, len(mails)), mail
