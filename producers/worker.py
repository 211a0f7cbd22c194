"""The ``mailferry fetch`` role: a consumer-group member on ``mailferry.mailboxes``.

The partitions Kafka assigns to this worker define the mailboxes it polls. On a rebalance the
revoke callback stops the affected mailboxes and waits for their running passes before it
returns, and Kafka's (eager) protocol hands the partitions to another worker only after that,
so no mailbox is ever polled by two workers at once. A worker that dies is replaced after the
group's session timeout. Shutdown stops every pass first and leaves the group last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from kafka import TopicPartition

from mailferry.audit import audit_event
from mailferry.blobs import open_blob_store
from mailferry.config import MailferryConfig
from mailferry.config.sources import ImapSource, Pop3Source, Source
from mailferry.errors import ConfigError, MailferryError
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.membership import GroupWatch
from mailferry.kafka.topics import MAILBOXES, full_name
from mailferry.observe import health, metrics
from mailferry.producers.context import FetchContext, PassResult
from mailferry.producers.delivery_watch import DeliveryWatch
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.imap_idle import idle_known, wait_for_mail
from mailferry.producers.mailboxes import resolve_source
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.publish import Publisher, make_producer
from mailferry.producers.scheduler import Scheduler
from mailferry.producers.state import StateCache
from mailferry.schemas.records import decode_mailbox_config
from mailferry.status import write_snapshot

log = logging.getLogger(__name__)


def group_id(config: MailferryConfig) -> str:
    return f"{config.kafka.topic_prefix}.fetch"


class FetchWorker:
    def __init__(
        self,
        config: MailferryConfig,
        servers: list[str],
        *,
        threads: int = 64,
        status_every: float = 5.0,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self.config = config
        self.servers = servers
        self.status_every = status_every
        self.session_timeout_ms = session_timeout_ms
        self.states = StateCache(config.kafka, servers)
        self.publisher = Publisher(config, make_producer(config, servers))
        self.context = FetchContext(
            publisher=self.publisher,
            blobs=open_blob_store(config, servers),
            inline_threshold=config.blob_store.inline_threshold,
            deliveries=DeliveryWatch(config.kafka, servers),
        )
        limits = {t.id: t.fetch_concurrency for t in config.tenants}
        self.scheduler = Scheduler(
            self.run_pass, limits, threads=threads, idle_fn=self.idle, on_error=self.report_error
        )
        self.assigned: set[int] = set()
        self.partition_of: dict[str, int] = {}
        self.closing = False
        self.loop: asyncio.AbstractEventLoop | None = None

    @metrics.observed_pass
    def run_pass(self, tenant: str, source: Source) -> PassResult:
        """One pass of one mailbox (in a scheduler thread)."""
        state = self.states.get(tenant, source.id)
        if isinstance(source, Pop3Source):
            return pop3_pass(source, tenant, state, self.context)
        assert isinstance(source, ImapSource)
        return imap_pass(source, tenant, state, self.context)

    def poll_now(self) -> None:
        """SIGUSR1: poll every mailbox that may poll now, instead of at its next timer (as
        running ``fetchmail`` again wakes its daemon); on the event loop."""
        log.info("poll requested: %d mailbox(es) start a pass now", self.scheduler.poll_now())

    def report_error(self, tenant: str, mailbox: str, error: MailferryError, stopped: bool) -> None:
        """An audit event when a mailbox starts failing (``error``) or is stopped (``paused``)."""
        key, value = audit_event(
            "paused" if stopped else "error",
            stage="fetch",
            tenant=tenant,
            mailbox_id=mailbox,
            details={"reason": error.reason_code, "message": str(error)[:500]},
        )
        self.publisher.producer.send(self.publisher.audit_topic, key=key, value=value)

    def idle(self, tenant: str, source: Source, timeout: float, stop: threading.Event) -> bool:
        """IMAP IDLE between passes (in a scheduler thread)."""
        assert isinstance(source, ImapSource)
        return wait_for_mail(
            source, self.context.tokens, timeout, stop, idle_known(self.states.get(tenant, source.id), source)
        )

    # -- called from the consumer thread, run on the event loop -----------------------------
    async def on_assigned(self, partitions: set[int]) -> None:
        self.assigned |= partitions
        health.ready()
        log.info("fetch worker assigned mailbox partitions %s", sorted(partitions))

    async def on_revoked(self, partitions: set[int]) -> None:
        health.ready(False, "rebalancing")
        keys = [k for k, p in self.partition_of.items() if p in partitions]
        await self.scheduler.remove(keys)
        for key in keys:
            self.partition_of.pop(key, None)
        self.states.forget([tuple(k.split("/", 1)) for k in keys])  # type: ignore[misc]
        self.assigned -= partitions

    async def on_record(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        if self.closing or key is None:
            return
        name = key.decode()
        if value is None:
            await self.scheduler.remove([name])
            self.partition_of.pop(name, None)
            return
        record = decode_mailbox_config(value)
        try:
            source = resolve_source(
                self.config, record["tenant"], record["mailbox_id"], record["config_json"]
            )
        except ConfigError as exc:
            log.error("mailbox %s: %s", name, exc)
            return
        self.partition_of[name] = partition
        await self.scheduler.upsert(record["tenant"], source, record["config_sha256"])

    # -- life cycle ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.loop = asyncio.get_running_loop()
        members = _Membership(self)
        members.start()
        try:
            while not stop.is_set() and members.is_alive():
                self.write_status()
                health.beat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.status_every)
        finally:
            self.closing = True
            last = await self.scheduler.stop_all()
            members.stopping.set()
            await asyncio.to_thread(members.join, 30)
            self.publisher.close()
            self.context.blobs.close()
            if self.context.deliveries is not None:
                self.context.deliveries.close()
            self.write_status(final=last)
        if members.error is not None:
            raise members.error

    def write_status(self, final: dict[str, Any] | None = None) -> None:
        """A status snapshot; ``final`` (the mailboxes' last status) marks the one on exit."""
        write_snapshot(
            self.config.state_dir,
            "fetch",
            {
                "state": "running" if final is None else "stopped",
                "assigned_partitions": sorted(self.assigned),
                "mailboxes": self.scheduler.snapshot() if final is None else final,
            },
        )


class _Membership(threading.Thread):
    """Owns the kafka-python consumer (not thread-safe) and forwards events to the loop."""

    def __init__(self, worker: FetchWorker) -> None:
        super().__init__(name="fetch-membership", daemon=True)
        self.worker = worker
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self.worker.loop is not None
        asyncio.run_coroutine_threadsafe(coro, self.worker.loop).result()

    def run(self) -> None:
        worker = self.worker
        consumer = new_consumer(
            worker.config.kafka,
            worker.servers,
            group_id(worker.config),
            session_timeout_ms=worker.session_timeout_ms,
            heartbeat_interval_ms=max(1000, worker.session_timeout_ms // 4),
            max_poll_interval_ms=600_000,
        )
        topics = [full_name(worker.config.kafka, MAILBOXES)]
        # more fetch workers than mailbox partitions is a valid deployment: idle members stay idle
        watch = GroupWatch(want_partitions=False)

        def revoked(partitions: list[TopicPartition]) -> None:
            self.call(worker.on_revoked({tp.partition for tp in partitions}))

        def assigned(partitions: list[TopicPartition]) -> None:
            if partitions:
                consumer.seek_to_beginning(*partitions)
            self.call(worker.on_assigned({tp.partition for tp in partitions}))

        try:
            watch.join(consumer, topics, revoked, assigned)
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for rec in records:
                        self.call(worker.on_record(tp.partition, rec.key, rec.value))
                watch.check(consumer)
        except BaseException as exc:
            self.error = exc
            log.exception("fetch worker membership failed")
        finally:
            consumer.close(autocommit=False)
