"""Raw records: inline below the threshold, a blob reference above, whatever the input shape."""

from __future__ import annotations

from pathlib import Path

from mailferry.blobs import LocalBlobStore
from mailferry.rawrecord import RawSource, build_raw_record

SOURCE = RawSource("acme", "catchall", "imap")


def test_small_chunked_message_is_inline_and_leaves_an_existing_blob_alone(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    data = b"Subject: hi\r\n\r\n" + b"x" * 1000
    ref = blobs.put(data)  # stored as a blob earlier, when the threshold was lower
    _key, record = build_raw_record(SOURCE, [data[:100], data[100:]], blobs=blobs, inline_threshold=4096)
    assert record["inline"] == data and record["blob_ref"] is None
    assert blobs.exists(ref)


def test_large_chunked_message_goes_to_the_blob_store_whole(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    chunks = [bytes([i]) * 1000 for i in range(10)]
    _key, record = build_raw_record(SOURCE, iter(chunks), blobs=blobs, inline_threshold=2500)
    assert record["inline"] is None and record["size"] == 10_000
    assert blobs.read(record["blob_ref"]) == b"".join(chunks)
    _key, whole = build_raw_record(SOURCE, b"".join(chunks), blobs=blobs, inline_threshold=2500)
    assert whole["blob_ref"] == record["blob_ref"] and whole["sha256"] == record["sha256"]
