"""One ``mailferry stream`` worker with one of Faust's costs changed, for the stream benchmark.

Run by ``benchmarks/stream_throughput.py`` (one child process per row), or by hand:

    .venv/bin/python benchmarks/stream_variant.py VARIANT -c MAILFERRY.toml stream

VARIANT is one of
- ``as-shipped``: the worker exactly as ``mailferry stream`` runs it;
- ``pure-iterator``: Faust's pure-Python stream iterator instead of its Cython one (``NO_CYTHON``);
- ``cython-optimizations``: Faust's opt-in repaired Cython fast paths (``cython_optimizations``);
- ``noop-monitor``: a sensor that records nothing instead of Faust's ``Monitor``;
- ``producer-buffer``: Faust's producer buffer (the table changelog's ``send_soon``) at 10,000
  messages instead of 100;
- ``uvloop``: the uvloop event loop instead of asyncio's;
- ``no-yield``: the agent as a coroutine that yields nothing to Faust (no per-value sink step);
- ``packed-outputs`` / ``unpacked-outputs``: deliver and audit records packed per input
  record, or one per item (``streams.app.PACK_OUTPUTS``);
- ``table-per-key``: the dedup table written through Faust's ``table[key] = value``, one
  changelog record per sighting (as before ``streams.dedup_table``);
- ``body-thread``: every mail's deliveries through ``shared_body`` in a thread, as before
  ``streams.bodies.needs_sharing`` (a thread hop per mail, not only for a shared body);
- ``slice-decode``: Avro records decoded from a copy of their body (a slice), as before
  ``schemas.codec.Codec.decode`` read them in place (a raw pack of megabytes copied twice);
- ``buffer-pack``: packs built in a growing ``BytesIO``, as before ``PackFormat.pack``'s join;
- ``murmur-per-key``: the deliver partition computed per delivery, as before the collector's
  ``Partitions`` cache;
- ``table-per-put``: each sighting put into the local store at once (one RocksDB write, and
  Faust's JSON serializer, per key), as before ``DedupTable.flush_sightings`` wrote a record's
  sightings in one write batch;
- ``chunked-block``: an inline mail's header block located chunk by chunk through a buffer, as
  before the router used ``mailferry.mail.block.locate_in``;
- ``stdlib-split``: every header block split by the standard library's parser, as before
  ``mailferry.mail.headers.plain_fields`` split plain blocks itself;
- ``splitter-defects``: every address field run through the address-list splitter to look for
  defects, as before ``mailferry.mail.addresses.plainly_valid`` let plain ones pass.

Each changes one thing, in this process only, before the worker starts; ``a+b`` applies both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

VARIANTS = (
    "as-shipped",
    "pure-iterator",
    "cython-optimizations",
    "noop-monitor",
    "producer-buffer",
    "uvloop",
    "no-yield",
    "packed-outputs",
    "unpacked-outputs",
    "table-per-key",
    "body-thread",
    "slice-decode",
    "buffer-pack",
    "murmur-per-key",
    "stdlib-split",
    "table-per-put",
    "chunked-block",
    "gc-freeze",
    "gc-threshold",
    "splitter-defects",
)


def _patch_app_kwargs(**extra: Any) -> None:
    import faust

    original = faust.App

    class Variant(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **(kwargs | extra))

    faust.App = Variant  # type: ignore[misc]


def _noop_monitor() -> type:
    """Faust's ``Monitor`` with its per-message and per-send hooks doing nothing (the worker
    reads a few of its attributes, so a bare ``Sensor`` does not do)."""
    from faust.sensors import Monitor

    def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    hooks = (
        "on_message_in",
        "on_stream_event_in",
        "on_stream_event_out",
        "on_message_out",
        "on_table_get",
        "on_table_set",
        "on_table_del",
        "on_send_initiated",
        "on_send_completed",
        "on_commit_initiated",
        "on_commit_completed",
        "track_tp_end_offset",
    )
    return type("NoopMonitor", (Monitor,), {name: nothing for name in hooks})


def apply(variants: str) -> None:
    for variant in variants.split("+"):
        _apply(variant)


def _apply(variant: str) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if variant == "pure-iterator":
        os.environ["NO_CYTHON"] = "1"  # read when faust.streams is imported
    elif variant == "uvloop":
        import uvloop

        uvloop.install()
    elif variant == "cython-optimizations":
        _patch_app_kwargs(cython_optimizations=True)
    elif variant == "noop-monitor":
        _patch_app_kwargs(Monitor=_noop_monitor())
    elif variant == "producer-buffer":
        from faust.transport.producer import ProducerBuffer

        ProducerBuffer.max_messages = 10_000
    elif variant == "no-yield":
        from mailferry.streams.app import StreamApp

        yielding = StreamApp._route_agent

        async def quiet(self: StreamApp, stream: Any) -> None:
            values: AsyncIterator[None] = yielding(self, stream)
            async for _ in values:
                pass

        StreamApp._route_agent = quiet  # type: ignore[assignment,method-assign]
    elif variant in ("packed-outputs", "unpacked-outputs"):
        from mailferry.streams import app

        app.PACK_OUTPUTS = variant == "packed-outputs"
    elif variant == "table-per-key":
        from mailferry.streams.dedup_table import DedupTable

        def per_key(self: DedupTable, key: bytes, value: dict[str, Any]) -> None:
            self[key] = value

        DedupTable.remember = per_key  # type: ignore[method-assign]
    elif variant == "body-thread":
        from mailferry.streams import app as stream_app

        stream_app.needs_sharing = lambda deliveries: True  # type: ignore[assignment]
    elif variant == "slice-decode":
        _slice_decode()
    elif variant == "buffer-pack":
        _buffer_pack()
    elif variant == "murmur-per-key":
        from mailferry.shard import partition_for
        from mailferry.streams.collector import Partitions

        Partitions.__call__ = lambda self, key: partition_for(key, self.partitions)  # type: ignore[method-assign]
    elif variant == "table-per-put":
        from mailferry.streams.dedup_table import DedupTable

        def put_now(self: DedupTable, key: bytes, value: dict[str, Any]) -> None:
            self.data[key] = value
            self._pending[key] = value

        DedupTable.remember = put_now  # type: ignore[method-assign]
        DedupTable.sighting = lambda self, key: self.get(key)  # type: ignore[method-assign]
        DedupTable._store_sightings = lambda self, partition, values, encoded: None  # type: ignore[method-assign]
    elif variant == "chunked-block":
        from mailferry.mail.block import chunks_of, header_block
        from mailferry.streams import router

        router.header_block = lambda data, *limit: header_block(  # type: ignore[assignment]
            chunks_of(data) if isinstance(data, bytes) else data, *limit
        )
    elif variant == "gc-freeze":
        import gc

        from mailferry.streams.app import StreamApp

        routing = StreamApp._route_agent

        async def frozen(self: StreamApp, stream: Any) -> AsyncIterator[None]:
            gc.freeze()
            async for value in routing(self, stream):
                yield value

        StreamApp._route_agent = frozen  # type: ignore[method-assign]
    elif variant == "gc-threshold":
        import gc

        gc.set_threshold(50_000, 20, 20)
    elif variant == "stdlib-split":
        from mailferry.mail import headers

        headers.plain_fields = lambda block: None  # type: ignore[assignment]
    elif variant == "splitter-defects":
        from mailferry.mail import headers

        headers.plainly_valid = lambda value: False  # type: ignore[assignment]


def _slice_decode() -> None:
    import importlib
    import io

    import fastavro

    codec_module = importlib.import_module("mailferry.schemas.codec")  # the package exports codec()
    original = codec_module.Codec.decode

    def sliced(self: Any, data: bytes) -> Any:
        if data[:2] == codec_module.MARKER:
            writer = self._writers.get(bytes(data[2 : codec_module.HEADER_SIZE]))
            body = data[codec_module.HEADER_SIZE :]  # the copy the in-place read avoids
            if writer is not None:
                reader = None if writer is self.schema else self.schema
                return fastavro.schemaless_reader(io.BytesIO(body), writer, reader)  # type: ignore[no-any-return]
        return original(self, data)

    codec_module.Codec.decode = sliced  # type: ignore[method-assign]


def _buffer_pack() -> None:
    import io

    import fastavro

    from mailferry import packing

    def buffered(self: packing.PackFormat, singles: list[bytes]) -> bytes:
        if len(singles) == 1:
            return singles[0]
        buffer = io.BytesIO()
        buffer.write(packing.codec(self.batch).header())
        fastavro.schemaless_writer(buffer, packing._LONG, len(singles))
        for single in singles:
            buffer.write(packing.avro_body(single))
        buffer.write(b"\x00")
        return buffer.getvalue()

    packing.PackFormat.pack = buffered  # type: ignore[method-assign]


def main() -> None:
    variant = sys.argv.pop(1)
    apply(variant)
    from mailferry.cli.main import entry

    sys.argv[0] = "mailferry"
    entry()


if __name__ == "__main__":
    main()
