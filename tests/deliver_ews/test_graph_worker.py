"""The delivery worker on the real broker writing through the Graph target into the GRAPH
EMULATOR (not Microsoft Graph): a mailbox's messages go in $batch requests, and a step
that fails keeps its own outcome (retried or dead-lettered) while its neighbours are delivered."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry_testkit.graph_emulator import GraphEmulator, GraphFault

from ..deliver.conftest import (
    RunningWorker,
    delivery_record,
    events_named,
    make_config,
    publish,
    sample_message,
)
from .workers import graph_targets

pytestmark = pytest.mark.integration
MAILBOX = "u0@acme.example"
COUNT = 30


@pytest.mark.parametrize("mode", ["import-mime", "json"])
def test_a_mailboxs_messages_go_in_batches_and_a_failed_step_keeps_its_own_outcome(
    tmp_path: Path,
    kafka_config: KafkaConfig,
    start_graph: Callable[..., GraphEmulator],
    start_worker: Callable[..., RunningWorker],
    mode: str,
) -> None:
    """30 messages for one mailbox, published before the worker starts: a few $batch calls
    instead of 30 requests. The EMULATOR throttles one step (429, Retry-After 1) and refuses
    another (400): the first is retried alone and delivered, the second dead-lettered alone."""
    graph_api = start_graph([MAILBOX])
    step = "importMime" if mode == "import-mime" else "createMessage"
    graph_api.inject(GraphFault.THROTTLED, operation=step, retry_after=1)
    graph_api.inject(GraphFault.MIME_INVALID, operation=step)
    config = make_config(tmp_path, kafka_config, graph_targets(graph_api, mode), tiers='["2s"]')
    publish(config, [delivery_record(MAILBOX, sample_message(i, MAILBOX)) for i in range(COUNT)])
    worker = start_worker(config)
    try:
        worker.wait_for(
            lambda: (
                len(events_named(config, "delivered")) == COUNT - 1
                and bool(events_named(config, "dead-lettered"))
            ),
            timeout=120,
        )
    finally:
        worker.shutdown()
    assert len(graph_api.items(MAILBOX)) == COUNT - 1
    [retried] = events_named(config, "retried")
    [letter] = events_named(config, "dead-lettered")
    assert letter["details"]["error_class"] == "permanent"
    assert "throttled" in retried["details"]["reason"]
    assert retried["dedup_key"] != letter["dedup_key"]
    delivered_keys = {e["dedup_key"] for e in events_named(config, "delivered")}
    assert retried["dedup_key"] in delivered_keys and letter["dedup_key"] not in delivered_keys
    # every step went through a $batch but the lone retry: 30 + 1 steps, a few requests
    assert graph_api.requests[step] == COUNT + 1
    assert sum(graph_api.batch_sizes) >= COUNT - 1
    assert math.ceil(COUNT / 20) <= len(graph_api.batch_sizes) <= 8, graph_api.batch_sizes
