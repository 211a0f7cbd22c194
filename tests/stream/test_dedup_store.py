"""The dedup table's sightings reach RocksDB in one write batch per raw record, as the bytes
Faust's own store writes: what ``DedupTable._store_sightings`` relies on of Faust's internals
(``Store._db_for_partition``, the raw key, the JSON value) fails here first if it changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faust.stores import rocksdb as faust_rocksdb

from mailferry.schemas.codec import DELIVERY
from mailferry.streams.app import StreamApp
from mailferry.streams.dedup import Sighting
from tests.stream.factories import DOMAIN, message
from tests.stream.test_dedup_agent import Clock, channels_app, drain, raw_value, route


async def test_sightings_are_stored_as_faust_stores_them(tmp_path: Path) -> None:
    app: StreamApp = channels_app(tmp_path, Clock())
    store: Any = app.table.data
    assert isinstance(store, faust_rocksdb.Store) and store.use_rocksdict
    mails = [message(("Delivered-To", f"u{n}@{DOMAIN}"), ("Message-ID", f"<{n}@x")) for n in range(2)]
    await route(app, *[(1, raw_value(app, mail)) for mail in mails])
    delivered = await drain(app.delivered, DELIVERY)  # type: ignore[attr-defined]
    assert len(delivered) == 2
    for delivery in delivered:
        key = delivery["dedup_key"].encode()
        stored = store._db_for_partition(1).get(key)
        assert stored is not None and store._db_for_partition(0).get(key) is None
        value = json.loads(stored)
        assert stored == store._encode_value(value)
        assert store._encode_key(key) == key
        assert Sighting.from_value(app.table.get(key)) == Sighting.from_value(value)
        assert value["origin"] == delivery["raw_origin"]
