"""What the pages read: fetch roles' snapshots, configured mailboxes, lag, the audit topic (real Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailferry.audit import audit_event
from mailferry.config import parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.console.readers import overview, throughput, trace
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.packing import AUDIT_PACK
from mailferry.status import write_snapshot

from ..topics import create_topics

pytestmark = pytest.mark.integration


def _source(source_id: str) -> str:
    return (
        f'[[tenants.sources]]\nid = "{source_id}"\nkind = "pop3"\nmode = "global"\nhost = "pop.example.org"\n'
        'username = "u"\nauth = { kind = "password", password = "env:UNSET_POP3_PASSWORD" }\n'
    )


def test_configured_mailboxes_no_role_reports_are_listed_as_never_polled(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    text = (
        f'state_dir = "{tmp_path}"\n' + kafka_config.connection_toml() + '[[tenants]]\nid = "acme"\n'
        'accepted_domains = ["acme.example"]\ndefault_mailbox = "postmaster@acme.example"\n'
        'default_target = "box"\n'
        f'[[tenants.targets]]\nname = "box"\nkind = "maildir"\npath = "{tmp_path}/md"\n'
        + _source("polled")
        + _source("waiting")
    )
    config = parse_config(text, check_secrets=False)
    write_snapshot(tmp_path, "fetch", {"mailboxes": {"acme/polled": {"fetched": 2, "state": "idle"}}})
    data = overview(config, list(kafka_config.bootstrap_servers))
    assert [(row.mailbox, row.status.get("state")) for row in data.tenants["acme"]] == [
        ("polled", "idle"),
        ("waiting", "never polled"),
    ]


def test_the_chart_and_the_trace_count_events_inside_packs(tmp_path: Path, kafka_config: KafkaConfig) -> None:
    create_topics(kafka_config, 1)
    now = datetime.now(UTC)
    events = [
        audit_event(name, stage="deliver", tenant="acme", message_id=f"<{n}@acme.example>", at=now)
        for name in ("fetched", "delivered")
        for n in range(3)
    ]
    send_to_audit(kafka_config, [(events[0][0], AUDIT_PACK.pack([value for _key, value in events]))])
    config = parse_config(f'state_dir = "{tmp_path}"\n' + kafka_config.connection_toml(), check_secrets=False)
    servers = list(kafka_config.bootstrap_servers)
    assert throughput(config, servers, now=now).totals == {"fetched": 3, "delivered": 3}
    story = trace(config, servers, "<1@acme.example>")
    assert [(e["event"], e["_offset"].count("/")) for e in story.events] == [("fetched", 2), ("delivered", 2)]


def send_to_audit(kafka: KafkaConfig, records: list[tuple[bytes, bytes]]) -> None:
    producer = new_producer(kafka, list(kafka.bootstrap_servers), acks="all")
    for key, value in records:
        producer.send(full_name(kafka, AUDIT), key=key, value=value)
    producer.flush()
    producer.close()
