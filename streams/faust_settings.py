"""How the Faust app is set up from a ``MailferryConfig``: its id and store.

Broker, credential and size settings come from ``mailferry.kafka.clients.faust_settings``.
"""

from __future__ import annotations

import importlib.util

from mailferry.config.models import MailferryConfig


def store_url() -> str:
    """RocksDB when its bindings (rocksdict) are installed, else memory (rebuilt from the changelog)."""
    return "rocksdb://" if importlib.util.find_spec("rocksdict") else "memory://"


def app_id(config: MailferryConfig) -> str:
    """The consumer group and changelog prefix: one per deployment prefix."""
    return f"{config.kafka.topic_prefix}.{config.stream.app_id}"
