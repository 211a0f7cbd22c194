"""What the pages show, read the way ``mailferry status``, ``dlq`` and ``audit trace`` read it.

Every function here blocks on Kafka or the state folder; the app calls them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailferry.audit import read_events
from mailferry.audit_index.access import open_index
from mailferry.audit_trace import Trace, trace_message
from mailferry.cli.status_cmd import mailbox_rows, paused_tenants
from mailferry.config import MailferryConfig
from mailferry.console.chart import Chart, per_minute
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, full_name
from mailferry.schemas import UnknownSchemaError
from mailferry.status import Lag, consumer_lag, read_snapshots


@dataclass
class MailboxRow:
    tenant: str
    mailbox: str
    status: dict[str, Any]


@dataclass
class Overview:
    tenants: dict[str, list[MailboxRow]] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    lag: list[Lag] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)


def overview(config: MailferryConfig, servers: list[str]) -> Overview:
    """Per tenant its mailboxes, paused tenants and consumer lag: exactly what ``mailferry status``
    shows (a configured mailbox no fetch worker reports is listed as never polled)."""
    snapshots = read_snapshots(config.state_dir)
    result = Overview(tenants={tenant.id: [] for tenant in config.tenants}, paused=paused_tenants(snapshots))
    result.roles = [{k: s.get(k) for k in ("role", "pid", "updated_at", "alive")} for s in snapshots]
    for name, status in mailbox_rows(config, snapshots).items():
        tenant, _, mailbox = name.partition("/")
        result.tenants.setdefault(tenant, []).append(MailboxRow(tenant, mailbox or name, status))
    result.lag = consumer_lag(config.kafka, servers)
    return result


def throughput(config: MailferryConfig, servers: list[str], *, now: datetime | None = None) -> Chart:
    """Fetched and delivered messages per minute, counted from the audit topic's recent events."""
    now = now or datetime.now(UTC)
    minutes = config.console.throughput_minutes
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    events = []
    for record in scan_topic(config.kafka, servers, full_name(config.kafka, AUDIT), since=since):
        try:
            events += [(str(event["event"]), event["at"]) for event in read_events(record)]
        except UnknownSchemaError:
            continue
    return per_minute(events, now, minutes)


def trace(config: MailferryConfig, servers: list[str], message_id: str) -> Trace:
    """The story of one message, from the audit index when one answers, else a bounded scan."""
    topic = full_name(config.kafka, AUDIT)
    index = open_index(config.audit_index_dir, config.audit_index.urls, topic)
    since = None if index is not None else datetime.now(UTC) - config.audit_index.scan_window
    return trace_message(config.kafka, servers, message_id, since=since, index=index)
