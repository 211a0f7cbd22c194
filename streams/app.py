"""The Faust application: raw records in, one delivery per (message, recipient) out.

One agent, ``route``, reads ``<prefix>.raw``, runs the pure router, and decides each
delivery candidate against the ``dedup`` table right there: ``raw`` is partitioned by the
dedup shard at the producer (``mailferry.shard``: tenant and Message-ID, or the content
hash), so every copy of a message, from any mailbox, arrives on one partition, and the
table is co-partitioned with ``raw`` (its changelog partition is the raw partition). What
is new inside the window goes to ``<prefix>.deliver`` keyed by tenant/recipient; replays
with ``bypass_dedup`` skip the table. Messages that cannot go on are dead-lettered on
``<prefix>.deliver.dlt`` with stage ``stream`` and their reason.

What one raw record causes is gathered while it is processed (``collector``) and handed to
the producer when it is done: one ``deliver`` record per deliver partition and one ``audit``
record, packed (``mailferry.packing``), and its sightings as one changelog record
(``dedup_table``); dead letters go at once, one per record. Faust flushes the producer
before it commits an offset, and it commits the offset of a record only after the agent
took the next one, so an offset is never committed before the records it caused are in
Kafka, and never after one Kafka refused (``outbox``): at-least-once, with copies caught by
the table and, after a crash, by idempotent delivery.
(Faust's "attachments" give the same guarantee but hold every record until the commit,
which measured several times slower here.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import faust

from mailferry.blobs import open_blob_store
from mailferry.config.models import MailferryConfig
from mailferry.errors import OperatorError, PermanentError, TransientError
from mailferry.kafka.clients import faust_settings
from mailferry.kafka.topics import (
    AUDIT,
    DELIVER,
    DLT,
    RAW,
    TopicSpec,
    full_name,
    largest_message_bytes,
    topic_settings,
)
from mailferry.observe import metrics
from mailferry.packing import PACK_OVERHEAD
from mailferry.schemas.records import RawMessage, unpack_raw_messages
from mailferry.streams.bodies import needs_sharing, shared_body
from mailferry.streams.collector import Collector
from mailferry.streams.dedup import Sighting, decide
from mailferry.streams.dedup_table import DedupTable
from mailferry.streams.directories import Directories
from mailferry.streams.fanout import FAN_OUT_CAP
from mailferry.streams.faust_settings import DEDUP_TABLE, app_id, dedup_changelog_spec, store_url
from mailferry.streams.outbox import Outbox
from mailferry.streams.outputs import Counters, Outputs
from mailferry.streams.records import Origin, resolved_details
from mailferry.streams.rescue import Rescuer, TopicRoles
from mailferry.streams.router import Candidate, DirectoryFor, Rejected, Routed, no_directory, route_raw
from mailferry.streams.skips import SkipWatch
from mailferry.streams.trace_key import load_trace_key

log = logging.getLogger(__name__)

TRANSIENT_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
PURGE_EVERY = 3600.0
PURGE_BATCH = 100_000
PRODUCER_BATCH_BYTES = 1024 * 1024
PRODUCER_LINGER = 0.005  # seconds
PACK_MARGIN = 64 * 1024  # below a topic's record limit: Kafka's own record and batch headers
# deliver and audit records packed per input record (every reader unpacks them)
PACK_OUTPUTS = True


class StreamApp(Outputs):
    """Builds the Faust app for one deployment; ``app`` is what the worker runs."""

    def __init__(
        self,
        config: MailferryConfig,
        servers: list[str],
        *,
        directory_for: DirectoryFor = no_directory,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        store: str | None = None,
        raw_partitions: int | None = None,
        deliver_partitions: int | None = None,
        pack_outputs: bool | None = None,
    ) -> None:
        """``raw_partitions``, ``deliver_partitions``: how many the topics have in Kafka
        (``worker.partitions_in_kafka``), which the table must match and a packed delivery's
        partition is computed from; the configured counts when not given.

        ``pack_outputs`` (``PACK_OUTPUTS`` when not given): one deliver record per (input
        record, deliver partition) and one audit record per input record (with a schema
        registry too: a pack then carries the registry's header, ``PackFormat.pack``)."""
        self.config = config
        self.kafka = config.kafka
        self.blobs = open_blob_store(config, servers)
        self.trace_key = load_trace_key(config)
        self.clock_ms = clock_ms
        self.window_ms = int(config.stream.dedup_window.total_seconds() * 1000)
        self.counters = Counters()
        self.store = store or store_url()
        self.directory = Directories(config, directory_for)
        # the table is co-partitioned with raw: as many partitions, the same numbers
        settings = topic_settings(self.kafka, RAW)
        self.partitions = raw_partitions or settings.partitions
        self.replicas = settings.replication_factor
        self.max_bytes = largest_message_bytes(self.kafka)
        smallest = min(
            s.max_message_bytes for s in [self.kafka.topics.defaults, *self.kafka.topics.overrides.values()]
        )
        accepted = min(
            PRODUCER_BATCH_BYTES,
            *(topic_settings(self.kafka, name).max_message_bytes for name in (DELIVER, AUDIT)),
        )
        self.pack_limit = accepted - min(PACK_MARGIN, accepted // 8) - PACK_OVERHEAD
        self.collector = Collector(
            deliver_partitions=deliver_partitions or topic_settings(self.kafka, DELIVER).partitions,
            limit=self.pack_limit,
            packed=PACK_OUTPUTS if pack_outputs is None else pack_outputs,
        )
        self._collecting = False
        web_port = config.stream.web_port
        self.app = faust.App(
            app_id(config),
            store=self.store,
            datadir=str(config.stream_data_dir / app_id(config)),
            web_enabled=web_port != 0,
            web_port=web_port or 6066,
            web_host="127.0.0.1",
            web_bind="127.0.0.1",
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=self.partitions,
            topic_replication_factor=settings.replication_factor,
            topic_disable_leader=True,
            # Faust's defaults (16 KB batches, no linger) put every 20 KB message in a batch
            # and a produce request of its own: measured 3.5x the CPU per record. No larger
            # than the smallest topic limit: a topic refuses a whole batch above its limit,
            # every record in it, so only a record too large on its own may be refused
            producer_max_batch_size=min(PRODUCER_BATCH_BYTES, smallest),
            producer_linger=PRODUCER_LINGER,
            consumer_auto_offset_reset="earliest",
            broker_commit_every=500,
            broker_commit_interval=1.0,
            table_standby_replicas=0,
            processing_guarantee="at_least_once",
            **faust_settings(self.kafka, servers),
        )
        self.raw_topic = self.app.topic(full_name(self.kafka, RAW))
        self.deliver_topic = self.app.topic(full_name(self.kafka, DELIVER))
        self.dlt_topic = self.app.topic(full_name(self.kafka, DLT))
        self.audit_topic = self.app.topic(full_name(self.kafka, AUDIT))
        self.table = DedupTable(
            self.app,
            name=DEDUP_TABLE,
            default=None,
            beacon=self.app.tables.beacon,
            partitions=self.partitions,
            key_type=bytes,
            extra_topic_configs=dict(dedup_changelog_spec(config, self.partitions).config),
        )
        self.app.tables.add(self.table)
        roles = TopicRoles(
            deliveries=frozenset([self.deliver_topic.get_topic_name()]),
            dead_letters=self.dlt_topic.get_topic_name(),
            audit=self.audit_topic.get_topic_name(),
        )
        self.rescuer = Rescuer(roles, self.blobs, self._send_bytes, self._dead_letter_refused)
        self.outbox = Outbox(self.app, on_failure=self._note_error, rescue=self.rescuer)
        self.app.timer(PURGE_EVERY)(self.purge_expired)
        self.app.agent(self.raw_topic, name="route")(self._route_agent)
        self.skips = SkipWatch()

        async def rebalanced(sender: Any, *_: Any, **__: Any) -> None:
            self.skips.rebalanced()

        self.app.on_partitions_revoked.connect(rebalanced)  # type: ignore[arg-type]

    def internal_topic_specs(self) -> list[TopicSpec]:
        """The table's changelog, to create before Faust subscribes.

        A topic Faust creates itself can be missing from its consumer's metadata until the
        next refresh (``metadata.max.age``, 5 minutes); created first, the table recovers
        at once.
        """
        spec = dedup_changelog_spec(self.config, self.partitions)
        assert spec.name == self.table.changelog_topic.get_topic_name()
        return [spec]

    # -- route: raw -> candidates ---------------------------------------------------------

    async def _route_agent(self, stream: Any) -> AsyncIterator[None]:
        """Every mail of every raw record (one, or several packed), in order."""
        async for event in stream.events():
            message = event.message
            base = Origin(message.topic, message.partition, message.offset)
            self.skips.saw(message.partition, message.offset)
            self._collecting = True
            try:
                await self._route_record(event.key, event.value, base)
            finally:
                self._collecting = False
            await self._send_collected(base)
            yield None  # one value per record: the agents' test context waits for it

    async def _route_record(self, key: bytes | None, value: bytes, base: Origin) -> None:
        try:
            mails = unpack_raw_messages(value)
        except PermanentError as exc:
            why = Rejected("malformed-message", exc.reason_code, exc.message)
            await self._dead_letter(key, None, base, why)
            return
        packed = len(mails) > 1
        where = str(base)
        for index, raw in enumerate(mails):
            started = time.monotonic()
            try:
                await self._route_one(key, raw, f"{where}/{index}" if packed else where)
            except Exception as exc:  # never stop on one message: dead-letter it instead
                origin = replace(base, index=index) if packed else base
                log.exception("stream: unexpected error on %s", origin)
                self.counters.last_error = f"{type(exc).__name__}: {exc}"
                why = Rejected("permanent", "stream-error", f"{type(exc).__name__}: {exc}")
                await self._dead_letter(key, raw, origin, why)
            finally:
                metrics.STREAM_ROUTE_SECONDS.observe(time.monotonic() - started)

    async def _send_collected(self, base: Origin) -> None:
        """What the record caused, to the producer before the agent takes the next record
        (Faust commits an offset only after that): deliveries, audit, then the sightings."""
        outputs = self.collector.close()
        for topic, records in ((self.deliver_topic, outputs.deliveries), (self.audit_topic, outputs.audit)):
            for record in records:
                await self.outbox.send(topic, key=record.key, value=record.value, partition=record.partition)
        self.table.flush_sightings(str(base), base.partition, self.pack_limit)

    async def _route_one(self, key: bytes | None, raw: RawMessage, origin: str) -> None:
        attempt = 0
        while True:
            try:
                outcome = await self._route_raw(raw, origin)
                break
            except (TransientError, OperatorError) as exc:
                # an outage or refused credentials (blob store) are not the message's fault:
                # hold the partition and retry
                hint = exc.retry_after if isinstance(exc, TransientError) else None
                delay = max(TRANSIENT_BACKOFF[min(attempt, len(TRANSIENT_BACKOFF) - 1)], hint or 0)
                attempt += 1
                self.counters.transient_retries += 1
                self.counters.last_error = f"{exc.reason_code}: {exc}"
                log.warning("stream: %s, retrying %s in %.0f s", exc, origin, delay)
                await asyncio.sleep(delay)
        if isinstance(outcome, Rejected):
            await self._dead_letter(key, raw, Origin.parse(origin), outcome)
            return
        await self._audit_routing("resolved", raw, outcome, details=resolved_details(outcome, origin))
        if outcome.resolution.dropped_by is not None:
            self.counters.dropped_by_rule += 1
            details = {"rule": outcome.resolution.dropped_by, "origin": origin}
            await self._audit_routing("skipped", raw, outcome, details=details)
            return
        for address in outcome.over_cap:
            details = {"reason": FAN_OUT_CAP, "delivered_to": outcome.fallback, "origin": origin}
            await self._audit_routing("skipped", raw, outcome, recipient=address, details=details)
        bodies = [c.delivery for c in outcome.candidates]
        if needs_sharing(bodies):
            bodies = await asyncio.to_thread(shared_body, bodies, self.blobs)
        for candidate, delivery in zip(outcome.candidates, bodies, strict=True):
            if delivery is not candidate.delivery:
                candidate = replace(candidate, delivery=delivery)
            if candidate.bypass_dedup:
                await self._emit(candidate, {"dedup": "bypassed"})
            else:
                started = time.monotonic()
                try:
                    await self._dedup_one(candidate)
                finally:
                    metrics.STREAM_DEDUP_SECONDS.observe(time.monotonic() - started)

    async def _route_raw(self, raw: RawMessage, origin: str) -> Routed | Rejected:
        """The pure router; in a thread when the tenant has a live directory (EWS/Graph
        look-ups block) or the headers are in the blob store (kinds kafka and s3 fetch them:
        0.3-0.5 s here for a 150 MB message), inline otherwise."""

        def call() -> Routed | Rejected:
            return route_raw(
                raw,
                config=self.config,
                blobs=self.blobs,
                origin=origin,
                now=datetime.now(UTC),
                trace_key=self.trace_key,
                directory_for=self.directory,
            )

        if raw.get("blob_ref") is None and not self.directory.has(raw["tenant"]):
            return call()
        return await self.directory.run(call)

    # -- dedup: candidates -> deliveries --------------------------------------------------

    async def _dedup_one(self, candidate: Candidate) -> None:
        """Forward the candidate unless the table saw its key inside the window. The table
        entry lives in the partition of the raw record being processed, which every copy of
        the message shares (``mailferry.shard``)."""
        delivery = candidate.delivery
        key = candidate.dedup_key.encode()
        now_ms = self.clock_ms()
        origin = delivery["raw_origin"] or ""
        previous = Sighting.from_value(self.table.sighting(key))
        verdict = decide(previous, now_ms=now_ms, window_ms=self.window_ms, origin=origin)
        if verdict == "duplicate" and previous is not None:
            self.counters.duplicates += 1
            await self._audit_delivery(
                "duplicate",
                delivery,
                details={
                    "first_seen_at": datetime.fromtimestamp(previous.first_seen_ms / 1000, UTC).isoformat(),
                    "first_origin": previous.origin,
                    "first_mailbox_id": previous.mailbox_id,
                    "first_delivery_id": previous.delivery_id,
                    "origin": origin,
                },
            )
            return
        if verdict == "reprocessed" and previous is not None:
            # written again: the first write may have failed to reach the changelog
            self.counters.reprocessed += 1
            self.table.remember(key, previous.to_value())
        else:
            sighting = Sighting(now_ms, origin, delivery["mailbox_id"], delivery["delivery_id"])
            self.table.remember(key, sighting.to_value())
        await self._emit(candidate, {"dedup": verdict})

    async def purge_expired(self) -> int:
        """Forget sightings older than the window from the local store (at most
        ``PURGE_BATCH`` a run), so its size follows the window and not the age of the
        deployment. The changelog forgets them by its own retention; a sighting that
        comes back from it after a rebuild is past the window and counts as expired.
        """
        now = self.clock_ms()
        stale = []
        for seen, (key, value) in enumerate(self.table.data.items(), start=1):
            sighting = Sighting.from_value(value)
            if sighting is None or now - sighting.first_seen_ms >= self.window_ms:
                stale.append(key)
                if len(stale) >= PURGE_BATCH:
                    break
            if seen % 5000 == 0:
                await asyncio.sleep(0)  # let the agents run
        for key in stale:
            del self.table.data[key]
        self.counters.purged += len(stale)
        return len(stale)

    def status(self) -> dict[str, Any]:
        return {
            "app_id": app_id(self.config),
            "store": self.store.removesuffix("://"),
            "data_dir": str(self.config.stream_data_dir / app_id(self.config)),
            "partitions": self.partitions,
            "dedup_window_s": self.window_ms // 1000,
            "counters": self.counters.__dict__,
        }
