"""POP3 fetching against the real Dovecot and the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.state import MailboxState, load_states

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.topics import AUDIT, RAW
from mailferry.testing.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, message_bytes, read_topic, sample

pytestmark = pytest.mark.integration


def _source(dovecot: DovecotServer, user: str, *, tls: str = "implicit", extra: str = "") -> str:
    port = {"implicit": dovecot.pop3s_port, "starttls": dovecot.pop3_port, "none": dovecot.pop3_port}[tls]
    return (
        f'[[tenants.sources]]\nid = "{user}"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        f'port = {port}\ntls = "{tls}"\nca_file = "{dovecot.ca_file}"\nusername = "{user}"\n'
        'auth = { kind = "password", password = "pw" }\ndeliver_to = "alice@acme.example"\n' + extra
    )


def test_pop3s_fetches_publishes_then_deletes(
    dovecot: DovecotServer, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    dovecot.add_user("p-basic", "pw")
    messages = [sample(i) for i in range(5)] + [sample(99, size=200_000)]
    dovecot.seed("p-basic", messages)
    config = make_config(tmp_path, kafka_config, _source(dovecot, "p-basic"))
    source = config.tenants[0].sources[0]
    ctx = make_context(config)
    state = MailboxState("acme", "p-basic")

    result = pop3_pass(source, "acme", state, ctx)  # type: ignore[arg-type]

    assert result.fetched == 6 and result.deleted == 6
    assert dovecot.message_count("p-basic") == 0
    raw = read_topic(kafka_config, RAW)
    assert sorted(message_bytes(r, ctx.blobs) for r in raw) == sorted(messages)
    assert sum(1 for r in raw if r["blob_ref"]) == 1
    events = [e["event"] for e in read_topic(kafka_config, AUDIT)]
    assert events.count("fetched") == 6 and events.count("source-deleted") == 6
    reloaded = load_states(kafka_config, list(kafka_config.bootstrap_servers), [("acme", "p-basic")])
    assert {r["status"] for r in reloaded[("acme", "p-basic")].pop3().values()} == {"deleted"}
    ctx.publisher.close()
