"""Every blob store kind against its real server: round trip, re-put, missing, corrupt.

``local`` is a folder, ``kafka`` the session's real broker, ``s3`` a real s3proxy.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import boto3
import pytest

from mailferry.blobs import BlobStore
from mailferry.blobs.kafka import KafkaBlobStore, Location, partition_for
from mailferry.blobs.s3 import S3BlobStore
from mailferry.config.kafka import KafkaConfig
from mailferry.errors import CredentialsError, PermanentError
from mailferry.kafka.clients import new_producer

pytestmark = pytest.mark.integration


def _content(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB, not compressible to nothing
    return (block * (size // len(block) + 1))[:size]


def _reason(store: BlobStore, reference: str) -> str:
    with pytest.raises(PermanentError) as exc:
        store.read(reference)
    return exc.value.reason_code


def test_round_trip_whole_streamed_and_opened(any_store: BlobStore) -> None:
    data = _content(11 * 1024 * 1024 + 123)
    chunks = [data[i : i + 700_000] for i in range(0, len(data), 700_000)]
    ref, size = any_store.put_chunks(iter(chunks))
    assert ref == "sha256:" + hashlib.sha256(data).hexdigest() and size == len(data)
    assert any_store.read(ref) == data
    assert b"".join(any_store.iter_chunks(ref)) == data
    with any_store.open(ref) as handle:
        assert handle.read(10) == data[:10]
        handle.seek(0)
        assert handle.read() == data
    assert any_store.exists(ref)
    assert any_store.put(data) == ref  # re-put: same reference, still readable
    assert any_store.read(ref) == data


def test_missing_and_malformed_references(any_store: BlobStore) -> None:
    any_store.put(b"something else, so the store exists")
    assert _reason(any_store, "sha256:" + "0" * 64) == "blob-missing"
    assert not any_store.exists("sha256:" + "0" * 64)
    assert _reason(any_store, "sha256:../../etc/passwd") == "blob-ref-invalid"
    assert _reason(any_store, "sha256:" + "AB" * 32) == "blob-ref-invalid"


def test_kafka_blob_written_on_one_host_is_read_on_another(
    kafka_store: KafkaBlobStore, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    data = _content(3 * 1024 * 1024, seed=7)
    ref, _ = kafka_store.put_chunks([data])
    other = KafkaBlobStore(kafka_config, list(kafka_config.bootstrap_servers), spool_dir=tmp_path / "other")
    try:
        assert other.read(ref) == data  # found through the index topic, not this process's memory
    finally:
        other.close()


def test_kafka_blobs_written_at_once_interleave_and_still_read_back(kafka_store: KafkaBlobStore) -> None:
    # digests chosen to land in one partition, so their chunks interleave there
    contents: list[bytes] = []
    seed = 0
    while len(contents) < 3:
        data = _content(2 * 1024 * 1024, seed)
        if partition_for(hashlib.sha256(data).hexdigest(), 6) == 0:
            contents.append(data)
        seed += 1
    refs: dict[int, str] = {}

    def put(i: int) -> None:
        refs[i] = kafka_store.put_chunks(
            contents[i][j : j + 100_000] for j in range(0, len(contents[i]), 100_000)
        )[0]

    threads = [threading.Thread(target=put, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, data in enumerate(contents):
        assert kafka_store.read(refs[i]) == data


def test_kafka_chunks_that_do_not_match_their_digest_are_corrupt(
    kafka_store: KafkaBlobStore, kafka_config: KafkaConfig
) -> None:
    claimed = _content(600_000, seed=1)
    digest = hashlib.sha256(claimed).hexdigest()
    wrong = claimed[:-1] + b"!"
    producer = new_producer(kafka_config, list(kafka_config.bootstrap_servers), max_request_size=2 << 20)
    partition = partition_for(digest, 6)
    futures = [
        producer.send(
            kafka_store.topic, key=digest.encode(), value=wrong[i : i + 300_000], partition=partition,
            headers=[("seq", str(n).encode())],
        )
        for n, i in enumerate(range(0, len(wrong), 300_000))
    ]  # fmt: skip
    first, last = futures[0].get(30).offset, futures[-1].get(30).offset
    location = Location(partition, first, last, len(wrong), len(futures), 0)
    producer.send(kafka_store.index_topic, key=digest.encode(), value=location.encode()).get(30)
    producer.close()
    ref = "sha256:" + digest
    assert _reason(kafka_store, ref) == "blob-corrupt"
    received = bytearray()
    with pytest.raises(PermanentError):
        for chunk in kafka_store.iter_chunks(ref):
            received += chunk
    assert len(received) < len(wrong)


def test_s3_large_blob_goes_up_in_parts_and_a_wrong_object_is_corrupt(s3_store: S3BlobStore) -> None:
    data = _content(12 * 1024 * 1024, seed=3)
    ref = s3_store.put(data)
    client = s3_store.client()
    head = client.head_object(Bucket=s3_store.bucket, Key=s3_store.key_of(ref))
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three 5 MiB parts
    claimed = _content(1000, seed=4)
    wrong_ref = "sha256:" + hashlib.sha256(claimed).hexdigest()
    client.put_object(Bucket=s3_store.bucket, Key=s3_store.key_of(wrong_ref), Body=claimed[::-1])
    assert _reason(s3_store, wrong_ref) == "blob-corrupt"


def test_s3_refuses_a_wrong_key_as_an_operator_error_not_a_verdict(s3_store: S3BlobStore) -> None:
    """Bad credentials pause the role (mail waits); a PermanentError would dead-letter each mail."""
    from mailferry.config.types import SecretRef

    config = s3_store.config.model_copy(update={"secret_access_key": SecretRef.plaintext("wrong")})
    wrong = S3BlobStore(config)
    with pytest.raises(CredentialsError) as exc:
        wrong.put(b"x")
    assert exc.value.reason_code == "blob-store-refused"
    _ = boto3  # the fixture made the bucket with the real key


def test_s3_prune_deletes_only_unreferenced_objects_older_than_the_grace(s3_store: S3BlobStore) -> None:
    from datetime import UTC, datetime, timedelta

    from mailferry.blob_prune import PruneReport, S3Side, prune_blobs

    kept, orphan = s3_store.put(b"referenced by a raw record"), s3_store.put(b"referenced by nothing")
    client = s3_store.client()
    client.put_object(Bucket=s3_store.bucket, Key="other/not-a-blob", Body=b"left alone")
    later = datetime.now(UTC) + timedelta(seconds=5)
    report = PruneReport(dry_run=False, topics=[])
    prune_blobs(S3Side(s3_store), {kept}, now=later, grace=timedelta(days=1), report=report)
    assert report.deleted == [] and s3_store.exists(orphan)  # within the grace period
    dry = PruneReport(dry_run=True, topics=[])
    prune_blobs(S3Side(s3_store), {kept}, now=later, grace=timedelta(0), report=dry)
    assert [b.reference for b in dry.deleted] == [orphan] and s3_store.exists(orphan)
    report = PruneReport(dry_run=False, topics=[])
    prune_blobs(S3Side(s3_store), {kept}, now=later, grace=timedelta(0), report=report)
    assert [b.reference for b in report.deleted] == [orphan]
    assert s3_store.exists(kept) and not s3_store.exists(orphan)
    assert client.get_object(Bucket=s3_store.bucket, Key="other/not-a-blob")["Body"].read() == b"left alone"


def test_opens_of_one_attempt_share_one_fetched_copy(s3_store: S3BlobStore) -> None:
    from mailferry.blobs.once import ReadOnce

    data = _content(3 * 1024 * 1024, seed=9)
    ref = s3_store.put(data)
    reads = ReadOnce(s3_store)
    first = reads.open(ref)
    assert first.read(100) == data[:100]
    s3_store.delete(ref)  # a second fetch would now fail: the copy is what the next opens read
    with reads.open(ref) as second:
        assert second.read() == data  # an offset of its own
    assert first.read(100) == data[100:200]
    first.close()
    reads.close()
    with pytest.raises(PermanentError) as exc:
        ReadOnce(s3_store).open(ref)
    assert exc.value.reason_code == "blob-missing"
