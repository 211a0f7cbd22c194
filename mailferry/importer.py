"""``mailferry import``: historical batches into ``mailferry.raw``.

Resumable: a checkpoint (how far the batch got) is written only after Kafka acknowledged
everything before it, so an interrupted import continues where it stopped and loses
nothing. Importing the same batch again publishes it again, and the stream's per-recipient
deduplication keeps it from being delivered twice; ``--restart`` forgets the checkpoint.

Mails go out as the fetcher's do (``mailferry.raw_sends``): packed per raw partition. Their
``imported`` audit events go packed too (``mailferry.audit.EventPacks``), at each checkpoint,
once every mail before it was acknowledged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailferry.audit import EventPacks, audit_event, event_pack_limit
from mailferry.batch_sources import BatchMessage, BatchProblem, read_eml, read_maildir, read_mbox
from mailferry.blobs import open_blob_store
from mailferry.config import MailferryConfig
from mailferry.errors import ConfigError
from mailferry.kafka.confirm import ConfirmedSends
from mailferry.kafka.topics import AUDIT, RAW, full_name
from mailferry.raw_sends import RawSends, make_producer, pack_limit, partition_count
from mailferry.rawrecord import RawSource, build_raw_record, encode_raw

BatchKind = Literal["mbox", "maildir", "eml"]
CHECKPOINT_EVERY = 200


@dataclass
class ImportReport:
    imported: int = 0
    bytes: int = 0
    records: int = 0  # raw records written: fewer than ``imported``, as mails are packed
    resumed_from: int | str | None = None
    problems: list[BatchProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Checkpoint:
    def __init__(self, folder: Path, kind: str, paths: list[Path], tenant: str, mailbox: str) -> None:
        identity = json.dumps([kind, [str(p.resolve()) for p in paths], tenant, mailbox])
        self.path = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:24]}.json"

    def load(self) -> int | str | None:
        try:
            value = json.loads(self.path.read_text("utf-8"))["resume_after"]
        except FileNotFoundError:
            return None
        return value if isinstance(value, int | str) else None

    def save(self, value: int | str, imported: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resume_after": value, "imported": imported}), encoding="utf-8")
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _messages(
    kind: BatchKind, paths: list[Path], resume: int | str | None
) -> Iterator[BatchMessage | BatchProblem]:
    if kind == "mbox":
        if len(paths) != 1:
            raise ConfigError("import mbox takes one file")
        with paths[0].open("rb") as handle:
            yield from read_mbox(handle, start=resume if isinstance(resume, int) else 0)
    elif kind == "maildir":
        if len(paths) != 1:
            raise ConfigError("import maildir takes one folder")
        yield from read_maildir(paths[0], after=resume if isinstance(resume, str) else "")
    else:
        yield from read_eml(paths, after=resume if isinstance(resume, int) else 0)


def import_batch(
    kind: BatchKind,
    paths: list[Path],
    *,
    tenant: str,
    mailbox: str,
    config: MailferryConfig,
    servers: list[str],
    envelope_to: list[str] | None = None,
    restart: bool = False,
    on_message: Callable[[int], None] | None = None,
) -> ImportReport:
    """Publish every message of the batch; returns what was and was not imported."""
    try:
        tenant_config = config.tenant(tenant)
    except KeyError:
        raise ConfigError(f"tenant {tenant!r} is not in the configuration") from None
    if not envelope_to and mailbox not in {s.id for s in tenant_config.sources}:
        raise ConfigError(
            f"mailbox {mailbox!r} is not a source of tenant {tenant!r}: name a configured source "
            "(its mode decides how recipients are found) or give --envelope-to"
        )
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
    checkpoint = Checkpoint(config.state_dir / "imports", kind, paths, tenant, mailbox)
    if restart:
        checkpoint.clear()
    report = ImportReport(resumed_from=checkpoint.load())
    blobs = open_blob_store(config, servers)
    threshold = config.blob_store.inline_threshold
    producer = make_producer(config, servers)
    raw_topic, audit_topic = full_name(config.kafka, RAW), full_name(config.kafka, AUDIT)
    source = RawSource(tenant=tenant, mailbox_id=mailbox, source_kind="import")
    pending: int | str | None = None
    sends: ConfirmedSends[str] = ConfirmedSends(producer)
    # packs close when full or at a checkpoint: nothing waits on an import's latency
    raw = RawSends(sends, raw_topic, partition_count(producer, raw_topic), pack_limit(config), float("inf"))
    events = EventPacks(event_pack_limit(config.kafka))
    closed: list[tuple[bytes, bytes]] = []  # full packs, waiting for the checkpoint like the rest
    durable_count = 0

    def durable(value: int | str) -> None:
        """The checkpoint moves only when Kafka acknowledged every message before it, and
        then their audit events."""
        nonlocal durable_count
        raw.flush()
        report.records = raw.records
        failure = (
            "messages to import; run the import again to resume after the last checkpoint "
            f"({durable_count} messages imported for sure)"
        )
        sends.wait().raise_for_failures(failure)
        for key, pack in closed + events.drain():
            sends.send(audit_topic, key=key, value=pack)
        closed.clear()
        sends.wait().raise_for_failures(failure)
        checkpoint.save(value, report.imported)
        durable_count = report.imported

    try:
        for item in _messages(kind, paths, report.resumed_from):
            if isinstance(item, BatchProblem):
                report.problems.append(item)
                continue
            report.warnings += [f"{item.position}: {w}" for w in item.warnings]
            key, record = build_raw_record(
                RawSource(**{**source.__dict__, "source_uid": item.position}),
                item.data,
                blobs=blobs,
                inline_threshold=threshold,
                envelope_recipients=envelope_to or (),
            )
            raw.add(key, encode_raw(record), tag=item.position)
            audit_key, audit_value = audit_event(
                "imported",
                stage="import",
                tenant=tenant,
                mailbox_id=mailbox,
                sha256=record["sha256"],
                details={"position": item.position, "size": str(record["size"])},
            )
            closed += events.add(audit_key, audit_value)
            report.imported += 1
            report.bytes += record["size"]
            pending = item.resume_after
            if on_message:
                on_message(len(item.data))
            if report.imported % CHECKPOINT_EVERY == 0:
                durable(pending)
        if pending is not None:
            durable(pending)
    finally:
        producer.close()
        blobs.close()
    return report
