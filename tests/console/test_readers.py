"""What the overview page reads: fetch roles' snapshots, configured mailboxes, lag (real Kafka)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailferry.config import parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.console.readers import overview
from mailferry.status import write_snapshot

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
