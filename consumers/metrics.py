"""Prometheus metrics of the delivery worker (served only when ``metrics.port`` is set)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "mailferry_deliveries_total", "Delivery attempts by outcome", ["tenant", "target", "outcome"]
)
DURATION = Histogram(
    "mailferry_delivery_seconds", "Time to write one message into its mailbox", ["tenant", "target"]
)
IN_FLIGHT = Gauge("mailferry_deliveries_in_flight", "Records handed to a target and not finished")
PAUSED_TENANTS = Gauge("mailferry_paused_tenants", "Tenants whose deliveries are paused")


def outcome(tenant: str, target: str, name: str, seconds: float | None = None) -> None:
    DELIVERIES.labels(tenant, target, name).inc()
    if seconds is not None:
        DURATION.labels(tenant, target).observe(seconds)


def serve(port: int | None) -> None:
    """Start the scrape endpoint; a port already taken (another role) is logged, not fatal."""
    if port is None:
        return
    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        log.warning("metrics endpoint on port %s not started: %s", port, exc)
