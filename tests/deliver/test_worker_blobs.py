"""The delivery worker on the real broker with blob references a topic writer crafted.

A delivery record is untrusted input: its ``blob_ref`` must not read a file outside the
blob store, and a blob whose content does not match its digest must be dead-lettered with
``blob-corrupt``, with nothing of it written into the mailbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.blobs import LocalBlobStore
from mailferry.config.kafka import KafkaConfig

from .conftest import (
    RunningWorker,
    dead_letters,
    delivery_record,
    maildir_files,
    maildir_target,
    make_config,
    publish,
)

pytestmark = pytest.mark.integration

LOCAL = '[blob_store]\nkind = "local"\n'


def _blob_delivery(recipient: str, body: bytes, blob_ref: str) -> dict[str, object]:
    record = delivery_record(recipient, body)
    record["inline"], record["blob_ref"] = None, blob_ref
    return record


def test_a_corrupt_blob_is_dead_lettered_and_nothing_is_delivered(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root = tmp_path / "maildirs"
    config = make_config(tmp_path, kafka_config, maildir_target(root), extra=LOCAL)
    body = b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"attachment data\r\n" * 100_000
    store = LocalBlobStore(config.blob_dir)
    ref = store.put(body)
    digest = ref.removeprefix("sha256:")
    # same size, one byte changed near the end: what a torn write or a tamperer leaves
    (config.blob_dir / digest[:2] / digest[2:4] / digest).write_bytes(body[:-5] + b"XXXXX")
    good = delivery_record("ok@acme.example", b"Subject: fine\r\n\r\nsmall\r\n")
    publish(config, [_blob_delivery("victim@acme.example", body, ref), good])

    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)) and bool(maildir_files(root, "ok@acme.example")))
    worker.shutdown()

    [letter] = dead_letters(config)
    assert (letter["error_class"], letter["reason_code"]) == ("permanent", "blob-corrupt")
    assert letter["delivery"]["recipient"] == "victim@acme.example"
    assert maildir_files(root, "victim@acme.example") == []
    box = root / "victim@acme.example"
    assert not box.exists() or not [p for p in box.rglob("*") if p.is_file()]


def test_a_reference_naming_a_file_outside_the_store_is_dead_lettered(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root = tmp_path / "maildirs"
    config = make_config(tmp_path, kafka_config, maildir_target(root), extra=LOCAL)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"Subject: secret\r\n\r\nthe host's private file\r\n")
    body = secret.read_bytes()
    record = _blob_delivery("victim@acme.example", body, f"sha256:{secret}")
    record["sha256"] = hashlib.sha256(body).hexdigest()
    publish(config, [record])

    worker = start_worker(config)
    worker.wait_for(lambda: bool(dead_letters(config)))
    worker.shutdown()

    [letter] = dead_letters(config)
    assert (letter["error_class"], letter["reason_code"]) == ("permanent", "blob-ref-invalid")
    assert maildir_files(root, "victim@acme.example") == []
