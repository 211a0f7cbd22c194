"""The ceiling under the stream worker: what one consumed or produced record costs by itself.

Run by ``benchmarks/stream_throughput.py`` (one child process per measurement, so the CPU
time is that of the loop alone), or by hand:

    .venv/bin/python benchmarks/stream_ceiling.py MODE --config MAILFERRY.toml --source TOPIC
        --sink TOPIC --count N [--fanout K]

MODE is one of
- ``aiokafka``: a plain aiokafka ``getmany`` → ``send`` loop (acks=all, idempotent),
  ``flush`` then commit after each fetched batch: at-least-once with nothing but the client;
- ``faust``: a minimal Faust agent that sends each record on (``Topic.send``), the same
  settings as the stream app (raw serializers, acks=all, commit every 500 / 1 s, 1 MB
  producer batches, 5 ms linger);
- ``faust-producer``: the same agent handing records straight to ``app.producer.send``;
- ``faust-consume``: the same agent sending nothing, to split the consumer's share from the
  producer's;
- ``faust-shape``: the stream app's shape with none of its work (two agents, a hop topic,
  a RocksDB table, two more records out): the Faust floor of ``mailferry stream``.

``--fanout K`` sends K records per consumed one, to topics ``SINK.0`` … ``SINK.K-1`` (the
stream app produces four per message to four topics: re-keyed copy, changelog entry,
delivery, audit event). Prints one JSON line: records
consumed, wall seconds and CPU seconds between the first consumed record and the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
from typing import Any

from mailferry.config import load_config
from mailferry.kafka.clients import aiokafka_settings, faust_credentials

BATCH_BYTES = 16 * 1024 * 1024


def _result(count: int, began: float, began_cpu: float) -> str:
    return json.dumps(
        {"records": count, "wall": time.perf_counter() - began, "cpu": time.process_time() - began_cpu}
    )


async def aiokafka_loop(args: argparse.Namespace) -> str:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        args.source,
        **aiokafka_settings(args.kafka, args.servers),
        group_id=f"ceiling-{os.getpid()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=BATCH_BYTES,
        fetch_max_bytes=BATCH_BYTES * 4,
    )
    producer = AIOKafkaProducer(
        **aiokafka_settings(args.kafka, args.servers),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_request_size=BATCH_BYTES,
        max_batch_size=1 << 20,
    )
    await consumer.start()
    await producer.start()
    seen, began, began_cpu = 0, 0.0, 0.0
    try:
        while seen < args.count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batches.values():
                if not seen and records:
                    began, began_cpu = time.perf_counter(), time.process_time()
                for record in records:
                    for _ in range(args.fanout):
                        await producer.send(f"{args.sink}.{_}", key=record.key, value=record.value)
                seen += len(records)
            if batches:
                await producer.flush()
                await consumer.commit()
        return _result(seen, began, began_cpu)
    finally:
        await producer.stop()
        await consumer.stop()


def faust_loop(args: argparse.Namespace) -> None:
    import faust
    import mode.loop

    mode.loop.use(args.loop)

    app = faust.App(
        f"ceiling-{os.getpid()}",
        broker=";".join(f"kafka://{s}" for s in args.servers),
        broker_credentials=faust_credentials(args.kafka),
        store="rocksdb://" if args.mode == "faust-shape" else "memory://",
        topic_partitions=2,
        datadir=tempfile.mkdtemp(prefix="ceiling-faust-"),
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        topic_disable_leader=True,
        producer_acks=-1,
        producer_max_request_size=BATCH_BYTES,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=BATCH_BYTES,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        processing_guarantee="at_least_once",
        producer_max_batch_size=args.batch_size,
        producer_linger=args.linger_ms / 1000,
    )
    source = app.topic(args.source)
    sinks = [app.topic(f"{args.sink}.{number}") for number in range(args.fanout)]
    fanout = 0 if args.mode == "faust-consume" else args.fanout
    state: dict[str, Any] = {"seen": 0}

    async def passthrough(stream: Any) -> Any:
        async for event in stream.events():
            if not state["seen"]:
                state["began"], state["cpu"] = time.perf_counter(), time.process_time()
            for sink in sinks[:fanout]:
                if args.mode == "faust-producer":
                    await app.producer.send(sink.get_topic_name(), event.key, event.value, None, None, None)
                else:
                    await sink.send(key=event.key, value=event.value, force=True)
            state["seen"] += 1
            if state["seen"] == args.count:
                print(_result(args.count, state["began"], state["cpu"]), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
            yield None

    if args.mode == "faust-shape":
        _add_shape_agents(app, source, sinks, args, state)
    else:
        app.agent(source, name="passthrough")(passthrough)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


AUDIT_LIKE = b"a" * 300  # the size of an audit event


def _add_shape_agents(
    app: Any, source: Any, sinks: list[Any], args: argparse.Namespace, state: dict[str, Any]
) -> None:
    """The stream app's shape with none of its work: agent 1 re-keys each record onto a hop
    topic; agent 2 reads the hop, sets a RocksDB table key (changelog record) and sends a
    delivery-sized and an audit-sized record. Two records in, four out, per message."""
    hop, deliver, audit = (sink.get_topic_name() for sink in sinks[:3])
    table = app.Table("seen", default=None, partitions=2, key_type=bytes)

    async def rekey(stream: Any) -> Any:
        async for event in stream.events():
            if not state["seen"]:
                state["began"], state["cpu"] = time.perf_counter(), time.process_time()
                state["seen"] = 1
            key = f"{event.message.partition}/{event.message.offset}".encode()
            await app.producer.send(hop, key, event.value, None, None, None)
            yield None

    async def dedup(stream: Any) -> Any:
        done = 0
        async for event in stream.events():
            table[event.key] = {"first_seen_ms": 1, "origin": "raw/0/1"}
            await app.producer.send(deliver, event.key, event.value, None, None, None)
            await app.producer.send(audit, event.key, AUDIT_LIKE, None, None, None)
            done += 1
            if done == args.count:
                print(_result(args.count, state["began"], state["cpu"]), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)
            yield None

    app.agent(source, name="rekey")(rekey)
    app.agent(app.topic(hop), name="dedup")(dedup)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mode", choices=("aiokafka", "faust", "faust-producer", "faust-consume", "faust-shape")
    )
    parser.add_argument("--config", required=True, help="a mailferry config: its [kafka] login and servers")
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--fanout", type=int, default=1)
    parser.add_argument("--loop", default="aio", help="event loop of the Faust modes: aio or uvloop")
    parser.add_argument("--batch-size", type=int, default=1 << 20, help="producer batch bytes (Faust: 16384)")
    parser.add_argument("--linger-ms", type=float, default=5.0, help="producer linger (Faust: 0)")
    args = parser.parse_args()
    args.kafka = load_config(args.config).kafka
    args.servers = list(args.kafka.bootstrap_servers)
    if args.mode == "aiokafka":
        print(asyncio.run(aiokafka_loop(args)), flush=True)
    else:
        faust_loop(args)


if __name__ == "__main__":
    main()
