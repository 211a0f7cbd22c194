"""What ``mailferry status`` shows: role snapshots from the state folder and consumer lag.

Each running role writes a small JSON snapshot (per mailbox: last poll, counts, last
error; per tenant: paused deliveries) into ``<state_dir>/status/``, replacing it
atomically. Lag comes from Kafka itself: committed offsets of every consumer group
against the end of each topic under the deployment's prefix.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_admin, new_consumer
from mailferry.kafka.node import pid_alive


def status_dir(state_dir: Path) -> Path:
    return state_dir / "status"


def write_snapshot(state_dir: Path, role: str, payload: dict[str, Any]) -> Path:
    """Replace this process's snapshot; readers never see a half-written file."""
    folder = status_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{role}-{socket.gethostname()}-{os.getpid()}.json"
    document = {"role": role, "pid": os.getpid(), "updated_at": datetime.now(UTC).isoformat(), **payload}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, default=str, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_snapshots(state_dir: Path) -> list[dict[str, Any]]:
    snapshots = []
    for path in sorted(status_dir(state_dir).glob("*.json")):
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        pid = document.get("pid")
        document["alive"] = isinstance(pid, int) and pid_alive(pid)
        snapshots.append(document)
    return snapshots


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def consumer_lag(kafka: KafkaConfig, servers: list[str]) -> list[Lag]:
    """Lag of every consumer group on every topic under the prefix, summed over partitions."""
    admin = new_admin(kafka, servers)
    consumer = new_consumer(kafka, servers)
    prefix = kafka.topic_prefix + "."
    try:
        groups = [g["group_id"] for g in admin.list_groups()]
        if not groups:
            return []
        committed = admin.list_group_offsets({g: None for g in groups})
        partitions: set[TopicPartition] = {
            tp for offsets in committed.values() for tp in offsets if tp.topic.startswith(prefix)
        }
        ends = consumer.end_offsets(list(partitions)) if partitions else {}
        totals: dict[tuple[str, str], list[int]] = {}
        for group, offsets in committed.items():
            for tp, meta in offsets.items():
                if tp not in ends:
                    continue
                entry = totals.setdefault((group, tp.topic), [0, 0])
                entry[0] += max(meta.offset, 0)
                entry[1] += ends[tp]
        return [Lag(g, t, c, e) for (g, t), (c, e) in sorted(totals.items())]
    finally:
        consumer.close()
        admin.close()
