"""``mailferry blobs prune``: blob lifetime follows topic retention.

A blob may go once no record still retained on ``raw``, ``deliver``, ``deliver.retry.*`` or
``deliver.dlt`` refers to it. The topics are read in one bounded pass (only the set of
references is held, never the records); a blob that no record names is deleted only when its
file has not been touched for the grace period, because a fetcher writes the blob before its
record is acknowledged, and a re-put of existing content refreshes the file's mtime.

The decision (:func:`classify`) is pure; reading Kafka, walking the store and deleting are
the I/O around it. A scan that stops short of the end offsets seen when it began raises
instead of pruning: a missed reference would delete mail still on its way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Literal, Protocol

from kafka import TopicPartition

from mailferry.blobs.base import PREFIX
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import SetupError, TransientError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import DELIVER, DLT, RAW, full_name, retry_topic
from mailferry.packing import DELIVERY_PACK, RAW_PACK
from mailferry.schemas import DEAD_LETTER, DELIVERY, RAW_MESSAGE, UnknownSchemaError, codec
from mailferry.schemas.codec import Record

if TYPE_CHECKING:  # boto3 is imported only when kind s3 is used
    from mailferry.blobs.s3 import S3BlobStore

Action = Literal["keep", "delete"]
TopicList = list[tuple[str, str]]  # (topic, schema name)
REFERENCED = "referenced"
IN_GRACE = "within grace"
ORPHAN = "orphan"
REFRESHED = "refreshed during prune"

_DIGEST = re.compile(r"[0-9a-f]{64}")


# --- pure logic -------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobFile:
    reference: str
    path: PurePath  # a file of kind local, an object key of kind s3
    size: int
    mtime: float  # seconds since the epoch


@dataclass(frozen=True)
class Decision:
    blob: BlobFile
    action: Action
    reason: str


def references_of(schema: str, record: Record) -> list[str]:
    """Blob references carried by one decoded record of ``schema``."""
    if schema in (RAW_MESSAGE, DELIVERY):
        ref = record.get("blob_ref")
        return [ref] if ref else []
    if schema == DEAD_LETTER:
        found: list[str] = []
        for part in ("delivery", "raw"):
            inner = record.get(part)
            if inner and inner.get("blob_ref"):
                found.append(inner["blob_ref"])
        return found
    return []


def cutoff_for(now: datetime, grace: timedelta) -> float:
    """The mtime (epoch seconds) a blob must be older than to be deletable."""
    if grace < timedelta(0):
        raise ValueError(f"the grace period cannot be negative: {grace}")
    return (now - grace).timestamp()


def classify(blob: BlobFile, referenced: set[str] | frozenset[str], cutoff: float) -> Decision:
    """Keep what a retained record names or what was touched at/after ``cutoff``; delete the rest."""
    if blob.reference in referenced:
        return Decision(blob, "keep", REFERENCED)
    if blob.mtime >= cutoff:
        return Decision(blob, "keep", IN_GRACE)
    return Decision(blob, "delete", ORPHAN)


def plan_prune(
    blobs: Iterable[BlobFile], referenced: set[str] | frozenset[str], now: datetime, grace: timedelta
) -> Iterator[Decision]:
    cutoff = cutoff_for(now, grace)
    for blob in blobs:
        yield classify(blob, referenced, cutoff)


@dataclass
class Tally:
    count: int = 0
    size: int = 0


@dataclass
class PruneReport:
    dry_run: bool
    topics: list[str]
    records: int = 0
    unknown_records: int = 0
    references: int = 0
    by_reason: dict[str, Tally] = field(default_factory=dict)
    deleted: list[BlobFile] = field(default_factory=list)

    def count(self, reason: str, blob: BlobFile) -> None:
        tally = self.by_reason.setdefault(reason, Tally())
        tally.count += 1
        tally.size += blob.size

    @property
    def bytes_freed(self) -> int:
        return sum(blob.size for blob in self.deleted)


def unread_partitions(ends: dict[TopicPartition, int], last_seen: dict[TopicPartition, int]) -> list[str]:
    """Partitions whose scan stopped before the end offset taken when it began.

    The reference topics are written without transactions and never compacted, so their
    offsets have no gaps: a complete scan always sees offset ``end - 1``.
    """
    short = [tp for tp, end in ends.items() if last_seen.get(tp, -1) < end - 1]
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in short)


# --- reading the topics -----------------------------------------------------------------


def _retry_number(name: str, prefix: str) -> int | None:
    suffix = name.removeprefix(prefix)
    return int(suffix) if suffix != name and suffix.isdigit() else None


def reference_topics(kafka: KafkaConfig, existing: set[str], retry_tiers: int) -> TopicList:
    """(topic, schema) pairs to read: the configured ones, which must exist, plus any retry
    tier topic left from a larger earlier tier list (its records still hold references)."""
    wanted = [
        (full_name(kafka, RAW), RAW_MESSAGE),
        (full_name(kafka, DELIVER), DELIVERY),
        (full_name(kafka, DLT), DEAD_LETTER),
        *((full_name(kafka, retry_topic(i)), DELIVERY) for i in range(retry_tiers)),
    ]
    missing = [name for name, _ in wanted if name not in existing]
    if missing:
        raise SetupError(
            f"topic(s) {', '.join(missing)} do not exist: wrong cluster or topic prefix? "
            "Refusing to prune, every blob would look unreferenced"
        )
    retry_prefix = full_name(kafka, retry_topic(0)).removesuffix("0")
    extra = sorted(
        (name for name in existing if _retry_number(name, retry_prefix) is not None),
        key=lambda name: _retry_number(name, retry_prefix) or 0,
    )
    names = {name for name, _ in wanted}
    return wanted + [(name, DELIVERY) for name in extra if name not in names]


def _snapshot(
    kafka: KafkaConfig, servers: list[str], retry_tiers: int
) -> tuple[TopicList, dict[TopicPartition, int]]:
    """The topics to read and, per partition that holds records, its end offset now."""
    consumer = new_consumer(kafka, servers)
    try:
        topics = reference_topics(kafka, set(consumer.topics()), retry_tiers)
        partitions = [
            TopicPartition(name, p)
            for name, _ in topics
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        begin = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return topics, {tp: end[tp] for tp in partitions if end[tp] > begin[tp]}


_UNPACK = {RAW_MESSAGE: RAW_PACK.unpack, DELIVERY: DELIVERY_PACK.unpack}


def _single(schema: str) -> Callable[[bytes], list[Record]]:
    return lambda value: [codec(schema).decode(value)]


def collect_references(
    kafka: KafkaConfig, servers: list[str], retry_tiers: int, report: PruneReport
) -> set[str]:
    """Every blob reference held by a retained record, streaming the topics one by one."""
    topics, ends = _snapshot(kafka, servers, retry_tiers)
    report.topics = [name for name, _ in topics]
    referenced: set[str] = set()
    last_seen: dict[TopicPartition, int] = {}
    for name, schema in topics:
        # raw and deliver records may pack several items (mailferry.packing): each one's reference counts
        decode = _UNPACK.get(schema, _single(schema))
        for record in scan_topic(kafka, servers, name):
            tp = TopicPartition(record.topic, record.partition)
            last_seen[tp] = max(last_seen.get(tp, -1), record.offset)
            report.records += 1
            try:
                decoded = decode(record.value)
            except UnknownSchemaError:
                report.unknown_records += 1
                continue
            for one in decoded:
                referenced.update(references_of(schema, one))
    short = unread_partitions(ends, last_seen)
    if short:
        raise TransientError(f"the scan of {', '.join(short)} ended before the end offsets; nothing deleted")
    report.references = len(referenced)
    return referenced


# --- the blob directory -----------------------------------------------------------------


def list_blob_files(root: Path) -> Iterator[BlobFile]:
    """The blobs under ``root`` (layout ``ab/cd/abcd…``); temp files of writes in flight and
    anything else that is not a blob are left alone."""
    if not root.is_dir():
        return
    for first in sorted(os.scandir(root), key=lambda e: e.name):
        if not (first.is_dir(follow_symlinks=False) and len(first.name) == 2):
            continue
        for second in sorted(os.scandir(first.path), key=lambda e: e.name):
            if not (second.is_dir(follow_symlinks=False) and len(second.name) == 2):
                continue
            for entry in os.scandir(second.path):
                name = entry.name
                if not (_DIGEST.fullmatch(name) and name[:2] == first.name and name[2:4] == second.name):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield BlobFile(PREFIX + name, Path(entry.path), stat.st_size, stat.st_mtime)


ASIDE = ".pruning-"


def recover_aside(root: Path) -> int:
    """Put back blobs a crashed prune left renamed aside, so they are judged again."""
    recovered = 0
    for aside in root.glob(f"??/??/{ASIDE}*"):
        final = aside.with_name(aside.name.removeprefix(ASIDE))
        if final.exists():
            aside.unlink(missing_ok=True)
        else:
            os.replace(aside, final)
            recovered += 1
    return recovered


def remove_if_stale(blob: BlobFile, cutoff: float) -> bool:
    """Delete ``blob`` unless it was re-put since it was listed; True when it went.

    The file is first renamed aside, so a concurrent re-put either touched it before (the
    mtime check below sees that and puts it back) or finds it gone and writes it anew; the
    content is the same either way, so putting an aside copy back is harmless.
    """
    path = Path(blob.path)
    aside = path.with_name(ASIDE + path.name)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if aside.stat().st_mtime >= cutoff:
        os.replace(aside, path)
        return False
    aside.unlink()
    return True


class PruneSide(Protocol):
    """What a prunable blob store kind offers: its blobs, and a careful delete."""

    def listing(self) -> Iterable[BlobFile]: ...

    def remove(self, blob: BlobFile, cutoff: float) -> bool:
        """Delete ``blob`` unless it was re-put at/after ``cutoff``; True when it went."""
        ...

    def recover(self) -> None:
        """Undo what a crashed earlier prune left half done."""
        ...


@dataclass(frozen=True)
class LocalSide:
    root: Path

    def listing(self) -> Iterable[BlobFile]:
        return list_blob_files(self.root)

    def remove(self, blob: BlobFile, cutoff: float) -> bool:
        return remove_if_stale(blob, cutoff)

    def recover(self) -> None:
        if self.root.is_dir():
            recover_aside(self.root)


@dataclass(frozen=True)
class S3Side:
    """Objects of an S3 bucket. S3 has no rename or conditional delete, so a re-put that
    lands between the LastModified check and the delete is lost (the grace period makes
    that window a narrow one); its delivery then dead-letters as ``blob-missing``."""

    store: S3BlobStore

    def listing(self) -> Iterable[BlobFile]:
        for item in self.store.list_blobs():
            yield BlobFile(item.reference, PurePosixPath(item.key), item.size, item.modified.timestamp())

    def remove(self, blob: BlobFile, cutoff: float) -> bool:
        modified = self.store.modified(blob.reference)
        if modified is None or modified.timestamp() >= cutoff:
            return False
        self.store.delete(blob.reference)
        return True

    def recover(self) -> None:
        return None


def prune_blobs(
    side: PruneSide,
    referenced: set[str],
    *,
    now: datetime,
    grace: timedelta,
    report: PruneReport,
) -> None:
    """Apply the plan to the store (or only count it, for a dry run)."""
    cutoff = cutoff_for(now, grace)
    if not report.dry_run:
        side.recover()
    for decision in plan_prune(side.listing(), referenced, now, grace):
        blob = decision.blob
        if decision.action == "keep":
            report.count(decision.reason, blob)
        elif report.dry_run or side.remove(blob, cutoff):
            report.count(ORPHAN, blob)
            report.deleted.append(blob)
        else:
            report.count(REFRESHED, blob)


def prune(
    kafka: KafkaConfig,
    servers: list[str],
    side: PruneSide,
    *,
    retry_tiers: int,
    grace: timedelta,
    now: datetime,
    dry_run: bool,
) -> PruneReport:
    """Read the references, then delete the unreferenced blobs older than ``grace``.

    ``now`` is taken before the scan by the caller, so a blob written while the topics are
    read is always inside the grace period.
    """
    cutoff_for(now, grace)
    report = PruneReport(dry_run=dry_run, topics=[])
    referenced = collect_references(kafka, servers, retry_tiers, report)
    prune_blobs(side, referenced, now=now, grace=grace, report=report)
    return report
