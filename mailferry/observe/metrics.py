"""Every Prometheus metric mailferry exports, in one place (names documented in docs/metrics.md).

The roles call the small functions here from their loops; the definitions stay out of the
role modules so a metric is renamed in one file and the dashboard
(deploy/grafana/mailferry.json) and docs/metrics.md follow it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from threading import Lock
from typing import Protocol, TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

# -- fetch ------------------------------------------------------------------------------------
FETCH_POLLS = Counter(
    "mailferry_fetch_polls_total",
    "Passes over one source mailbox, by result",
    ["tenant", "mailbox", "result"],
)
FETCH_MESSAGES = Counter(
    "mailferry_fetch_messages_total", "Messages published to the raw topic", ["tenant", "mailbox"]
)
FETCH_BYTES = Counter("mailferry_fetch_bytes_total", "Bytes of the messages fetched", ["tenant", "mailbox"])
FETCH_ERRORS = Counter(
    "mailferry_fetch_errors_total", "Failed passes and per-message errors", ["tenant", "mailbox", "reason"]
)
FETCH_POLL_SECONDS = Histogram(
    "mailferry_fetch_poll_seconds", "Duration of one pass over one mailbox", ["tenant", "mailbox"]
)


class _PollLag(Collector):
    """``mailferry_fetch_poll_lag_seconds``: seconds since each mailbox's last finished pass.

    Computed at scrape time, so a mailbox whose passes stopped (a hung server, a paused tenant)
    shows a lag that keeps growing instead of a stale value.
    """

    def __init__(self) -> None:
        self._lock = Lock()
        self._last: dict[tuple[str, str], float] = {}

    def polled(self, tenant: str, mailbox: str) -> None:
        with self._lock:
            self._last[(tenant, mailbox)] = time.monotonic()

    def forget(self, tenant: str, mailbox: str) -> None:
        with self._lock:
            self._last.pop((tenant, mailbox), None)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mailferry_fetch_poll_lag_seconds",
            "Seconds since the last finished pass over the mailbox",
            labels=["tenant", "mailbox"],
        )
        now = time.monotonic()
        with self._lock:
            for (tenant, mailbox), at in sorted(self._last.items()):
                family.add_metric([tenant, mailbox], now - at)
        yield family


POLL_LAG = _PollLag()
REGISTRY.register(POLL_LAG)


def fetch_pass(tenant: str, mailbox: str, seconds: float, *, messages: int, size: int, errors: int) -> None:
    """One finished pass (``errors``: messages of it that failed)."""
    FETCH_POLLS.labels(tenant, mailbox, "ok").inc()
    FETCH_MESSAGES.labels(tenant, mailbox).inc(messages)
    FETCH_BYTES.labels(tenant, mailbox).inc(size)
    if errors:
        FETCH_ERRORS.labels(tenant, mailbox, "message").inc(errors)
    FETCH_POLL_SECONDS.labels(tenant, mailbox).observe(seconds)
    POLL_LAG.polled(tenant, mailbox)


def fetch_failed(tenant: str, mailbox: str, seconds: float, reason: str) -> None:
    FETCH_POLLS.labels(tenant, mailbox, "error").inc()
    FETCH_ERRORS.labels(tenant, mailbox, reason).inc()
    FETCH_POLL_SECONDS.labels(tenant, mailbox).observe(seconds)


class _Source(Protocol):
    @property
    def id(self) -> str: ...


class _Counts(Protocol):
    fetched: int
    bytes: int
    errors: int


W = TypeVar("W")
S = TypeVar("S", bound=_Source)
R = TypeVar("R", bound=_Counts)


def observed_pass(run: Callable[[W, str, S], R]) -> Callable[[W, str, S], R]:
    """Decorates a fetch worker's ``run_pass(tenant, source)``: every pass is counted."""

    @functools.wraps(run)
    def wrapper(worker: W, tenant: str, source: S) -> R:
        started = time.monotonic()
        try:
            result = run(worker, tenant, source)
        except Exception as exc:
            reason = str(getattr(exc, "reason_code", "") or type(exc).__name__)
            fetch_failed(tenant, source.id, time.monotonic() - started, reason)
            raise
        fetch_pass(
            tenant,
            source.id,
            time.monotonic() - started,
            messages=result.fetched,
            size=result.bytes,
            errors=result.errors,
        )
        return result

    return wrapper


# -- stream -----------------------------------------------------------------------------------
STREAM_STAGE_SECONDS = Histogram(
    "mailferry_stream_stage_seconds",
    "Time one record spends in a stream stage (route: raw -> candidates, dedup: -> deliveries)",
    ["stage"],
)


_STREAM_COUNTERS = {
    "routed": "Deliveries emitted (one per message and recipient)",
    "duplicates": "Deliveries dropped as duplicates within the dedup window",
    "dead_lettered": "Records the stream sent to the dead-letter topic",
    "dropped_by_rule": "Recipients dropped by a tenant rule",
    "reprocessed": "Deliveries emitted again for the same raw record (a replay or a restart)",
    "transient_retries": "Stream steps retried after a transient error",
}


class StreamCounters(Collector):
    """``mailferry_stream_<name>_total``, read at scrape time from the stream app's own counters
    (the figures ``mailferry status`` shows), so the app keeps one count, not two."""

    def __init__(self, counters: object) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        for name, text in _STREAM_COUNTERS.items():
            yield CounterMetricFamily(f"mailferry_stream_{name}", text, value=getattr(self.counters, name, 0))


# the stream times every mail: each stage's child is looked up once, not per observation
STREAM_ROUTE_SECONDS = STREAM_STAGE_SECONDS.labels("route")
STREAM_DEDUP_SECONDS = STREAM_STAGE_SECONDS.labels("dedup")


# -- deliver ----------------------------------------------------------------------------------
DELIVERIES = Counter(
    "mailferry_deliveries_total",
    "Delivery attempts by outcome (delivered, retried, dead-lettered, skipped)",
    ["tenant", "target", "outcome"],
)
ATTEMPT_SECONDS = Histogram(
    "mailferry_delivery_seconds",
    "Time of one delivery attempt into a target, by outcome",
    ["tenant", "target", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


IN_FLIGHT = Gauge("mailferry_deliveries_in_flight", "Records handed to a target and not finished")
PAUSED_TENANTS = Gauge("mailferry_paused_tenants", "Tenants whose deliveries are paused")


def outcome(tenant: str, target: str, name: str, seconds: float | None = None) -> None:
    """One settled delivery record; ``seconds``: how long its target attempt took."""
    DELIVERIES.labels(tenant, target, name).inc()
    if seconds is not None:
        ATTEMPT_SECONDS.labels(tenant, target, name).observe(seconds)
