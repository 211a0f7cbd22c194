"""Strimzi ``KafkaTopic`` and ``KafkaUser`` resources from the topic settings ``topics ensure`` uses.

The topics come from ``topic_specs`` itself, so a KafkaTopic can never say something else than
``mailferry topics ensure`` would do, plus the stream role's Faust changelog from the function
the role creates it with (``dedup_changelog_spec``). Each role gets a KafkaUser whose ACLs allow what the role
reads and writes and nothing more (the table ``ROLE_ACCESS``), so a leaked fetch credential
cannot read the deliveries, and a leaked audit-index credential can read only the audit topic.
Pure: builds dicts; ``mailferry topics manifest`` prints them as YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from mailferry.config.models import MailferryConfig
from mailferry.kafka.topics import (
    AUDIT,
    BLOBS,
    BLOBS_INDEX,
    DELIVER,
    DELIVERY_LEDGER,
    DLT,
    DLT_STATE,
    FETCH_STATE,
    MAILBOXES,
    RAW,
    TopicSpec,
    full_name,
    retry_topic,
    topic_specs,
)
from mailferry.streams.faust_settings import app_id, dedup_changelog_spec

API_VERSION = "kafka.strimzi.io/v1beta2"
Authentication = Literal["scram-sha-512", "tls"]
READ = ("Read", "Describe")
WRITE = ("Write", "Describe")
READ_WRITE = ("Read", "Write", "Describe")


@dataclass(frozen=True)
class Access:
    """What one role does with Kafka: topics by logical name, its consumer group (or None)."""

    topics: dict[str, tuple[str, ...]]
    group: str | None
    retry_tiers: tuple[str, ...] = ()  # operations on every deliver.retry.<n>


ROLE_ACCESS: dict[str, Access] = {
    "fetch": Access(
        {
            MAILBOXES: READ,
            FETCH_STATE: READ_WRITE,
            RAW: WRITE,
            AUDIT: READ_WRITE,
            BLOBS: WRITE,
            BLOBS_INDEX: WRITE,
        },
        group="fetch",
    ),
    "stream": Access(
        {RAW: READ, DELIVER: WRITE, DLT: WRITE, AUDIT: WRITE, BLOBS: READ, BLOBS_INDEX: READ},
        group=None,  # Faust's group is the app id (stream.app_id), see ``_stream_acls``
    ),
    "deliver": Access(
        {
            DELIVER: READ,
            DLT: READ_WRITE,
            DLT_STATE: READ_WRITE,
            DELIVERY_LEDGER: READ_WRITE,
            AUDIT: WRITE,
            BLOBS: READ,
            BLOBS_INDEX: READ,
        },
        group="deliver",
        retry_tiers=READ_WRITE,
    ),
    "audit-index": Access({AUDIT: READ}, group=None),
}


def resource_name(topic: str) -> str:
    """A Kubernetes object name (DNS-1123 subdomain) for a topic; ``spec.topicName`` keeps the real one."""
    name = re.sub(r"[^a-z0-9.-]+", "-", topic.lower()).strip(".-")
    return name[:253]


def _config_value(value: str) -> str | int:
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def kafka_topic(spec: TopicSpec, cluster: str, namespace: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": resource_name(spec.name), "labels": {"strimzi.io/cluster": cluster}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaTopic",
        "metadata": metadata,
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "config": {key: _config_value(value) for key, value in sorted(spec.config.items())},
        },
    }


def spec_of(resource: dict[str, Any]) -> tuple[str, int, int, dict[str, str]]:
    """(topic, partitions, replicas, config as strings) of a KafkaTopic, to compare with ``topic_specs``."""
    spec = resource["spec"]
    config = {key: str(value) for key, value in spec.get("config", {}).items()}
    return spec["topicName"], spec["partitions"], spec["replicas"], config


def _acl(kind: str, name: str, operations: tuple[str, ...], pattern: str = "literal") -> dict[str, Any]:
    return {
        "resource": {"type": kind, "name": name, "patternType": pattern},
        "operations": list(operations),
    }


def role_acls(config: MailferryConfig, role: str) -> list[dict[str, Any]]:
    kafka = config.kafka
    access = ROLE_ACCESS[role]
    acls = [_acl("topic", full_name(kafka, logical), ops) for logical, ops in access.topics.items()]
    if access.retry_tiers:
        acls += [
            _acl("topic", full_name(kafka, retry_topic(tier)), access.retry_tiers)
            for tier in range(len(config.retry.tiers))
        ]
    if access.group is not None:
        acls.append(_acl("group", f"{kafka.topic_prefix}.{access.group}", READ))
    if role == "stream":
        acls += _stream_acls(config)
    return acls


def _stream_acls(config: MailferryConfig) -> list[dict[str, Any]]:
    """Faust owns its changelog topics (``<app id>-...``; the app id is ``<topic prefix>.<stream.app_id>``),
    joins the group named after the app id, and ``mailferry stream`` checks every topic's settings
    at start."""
    faust_app = app_id(config)
    return [
        _acl("topic", f"{faust_app}-", ("All",), pattern="prefix"),
        _acl("group", faust_app, READ),
        _acl("topic", f"{config.kafka.topic_prefix}.", ("Describe", "DescribeConfigs"), pattern="prefix"),
    ]


def kafka_user(
    config: MailferryConfig, role: str, cluster: str, namespace: str | None, authentication: Authentication
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": f"{resource_name(config.kafka.topic_prefix)}-{role}",
        "labels": {"strimzi.io/cluster": cluster},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaUser",
        "metadata": metadata,
        "spec": {
            "authentication": {"type": authentication},
            "authorization": {"type": "simple", "acls": role_acls(config, role)},
        },
    }


def strimzi_resources(
    config: MailferryConfig,
    cluster: str,
    *,
    namespace: str | None = None,
    authentication: Authentication = "scram-sha-512",
    users: bool = True,
) -> list[dict[str, Any]]:
    """Every KafkaTopic of ``topics ensure`` and the stream role's changelog, then one KafkaUser per role."""
    specs = [*topic_specs(config.kafka, len(config.retry.tiers)), dedup_changelog_spec(config)]
    resources = [kafka_topic(spec, cluster, namespace) for spec in specs]
    if users:
        resources += [kafka_user(config, role, cluster, namespace, authentication) for role in ROLE_ACCESS]
    return resources
