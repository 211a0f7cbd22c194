"""deploy/grafana/mailferry.json asks only for metrics mailferry exports and docs/metrics.md names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from mailferry.config.kafka import KafkaConfig
from mailferry.observe.lag import LagProbe
from mailferry.observe.metrics import StreamCounters
from mailferry.streams.outputs import Counters

ROOT = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    """Every family name the process registers, plus those the roles register when they start."""
    per_role = [LagProbe(KafkaConfig(), [], "group"), StreamCounters(Counters())]
    families = [*REGISTRY.collect(), *(f for collector in per_role for f in collector.collect())]
    return {f.name for f in families} | {f"{f.name}_total" for f in families if f.type == "counter"}


def test_every_dashboard_query_uses_exported_and_documented_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "mailferry.json").read_text())
    docs = (ROOT / "docs" / "metrics.md").read_text()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 14
    used = {name for expr in exprs for name in re.findall(r"\bmailferry_[a-z_]+", expr)}
    exported = exported_names()
    for name in used:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert name in exported or base in exported, name
        assert f"`{base}`" in docs, f"{base} is not in docs/metrics.md"
    for area in ("fetch", "stream", "deliver", "consumer_lag"):
        assert any(area in name for name in used), area
