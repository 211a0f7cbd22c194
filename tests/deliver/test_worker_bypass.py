"""The ledger stops a second delivery of the same dedup key, except for a bypass-dedup replay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.delivery_flags import BYPASS_DEDUP

from .conftest import (
    RunningWorker,
    audit_events,
    delivery_record,
    maildir_config,
    maildir_files,
    publish,
    sample_message,
)

pytestmark = pytest.mark.integration


def test_a_bypass_replay_delivers_again_once_per_replayed_record(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root, config = maildir_config(tmp_path, kafka_config)
    recipient = "bob@acme.example"
    first = delivery_record(recipient, sample_message(1, recipient))
    again = {**first, "delivery_id": "replayed-1"}  # the stream's dedup would have dropped it
    replay = {**first, "delivery_id": "replayed-2", "flags": [BYPASS_DEDUP]}
    publish(config, [first, again, replay, replay])  # the replayed record twice: a crash re-sends it

    worker = start_worker(config)
    worker.wait_for(
        lambda: sum(1 for e in audit_events(config) if e["event"] in ("delivered", "skipped")) >= 4
    )
    worker.shutdown()

    assert len(maildir_files(root, recipient)) == 2
    events = [e["event"] for e in audit_events(config)]
    assert events.count("delivered") == 2 and events.count("skipped") == 2
