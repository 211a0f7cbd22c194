"""Kafka settings from the environment: ``MAILFERRY_KAFKA_<FIELD>`` over the file's ``[kafka]``.

A container or a Kubernetes pod gets its cluster address and SASL user from its environment,
while the same config file (tenants, targets) is shared by every deployment. Only the flat
connection settings are read; ``bootstrap_servers`` is comma-separated. A SASL password is
still a secret reference (``env:…`` or ``file:…``), never the password itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PREFIX = "MAILFERRY_KAFKA_"
FIELDS = (
    "bootstrap_servers",
    "topic_prefix",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "client_id",
)


def with_kafka_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``data`` (a parsed config file) with every ``MAILFERRY_KAFKA_*`` variable set applied."""
    found: dict[str, Any] = {}
    for name in FIELDS:
        value = environ.get(PREFIX + name.upper())
        if value is None or value == "":
            continue
        found[name] = (
            [s.strip() for s in value.split(",") if s.strip()] if name == "bootstrap_servers" else value
        )
    if not found:
        return data
    kafka = data.get("kafka", {})
    return data | {"kafka": (kafka if isinstance(kafka, dict) else {}) | found}
