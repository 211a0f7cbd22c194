"""/healthz and /readyz answers, and the JSON log lines, without Kafka."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from threading import Thread

import pytest
from prometheus_client import REGISTRY

from mailferry import redact
from mailferry.errors import TransientError
from mailferry.observe import metrics
from mailferry.observe.health import Health
from mailferry.observe.logs import JsonFormatter
from mailferry.observe.server import handler_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_probes_follow_readiness_and_a_stuck_loop() -> None:
    clock = FakeClock()
    health = Health(stuck_after=60, clock=clock)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(health))
    Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert status(port, "/healthz") == (200, "alive\n")
        assert status(port, "/readyz") == (503, "starting\n")
        health.ready()
        assert status(port, "/readyz") == (200, "ready\n")
        health.ready(False, "rebalancing")
        assert status(port, "/readyz") == (503, "rebalancing\n")
        health.ready()
        clock.now += 61  # no beat for longer than stuck_after: neither alive nor ready
        assert status(port, "/healthz")[0] == 503
        assert status(port, "/readyz")[0] == 503
        health.beat()
        assert status(port, "/healthz")[0] == 200
        assert status(port, "/readyz")[0] == 200
        assert status(port, "/metrics")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_json_log_lines_are_objects_and_stay_redacted() -> None:
    redact.install()
    redact.register("hunter2-secret-value")
    record = logging.getLogRecordFactory()(
        "mailferry.test",
        logging.WARNING,
        __file__,
        1,
        "login with %s failed",
        ("hunter2-secret-value",),
        None,
    )
    entry = json.loads(JsonFormatter("fetch").format(record))
    assert entry["role"] == "fetch" and entry["level"] == "warning" and entry["logger"] == "mailferry.test"
    assert entry["message"] == "login with *** failed"


def test_a_failed_fetch_pass_is_counted_by_its_reason() -> None:
    @dataclass
    class Source:
        id: str

    @dataclass
    class Counts:
        fetched: int = 0
        bytes: int = 0
        errors: int = 0

    class Worker:
        @metrics.observed_pass
        def run_pass(self, tenant: str, source: Source) -> Counts:
            if source.id == "busy":
                raise TransientError("server busy", reason_code="server-busy")
            return Counts(fetched=2, bytes=300, errors=1)

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    worker = Worker()
    with pytest.raises(TransientError):
        worker.run_pass("t-health", Source("busy"))
    worker.run_pass("t-health", Source("fine"))
    busy = {"tenant": "t-health", "mailbox": "busy"}
    fine = {"tenant": "t-health", "mailbox": "fine"}
    assert value("mailferry_fetch_errors_total", **busy, reason="server-busy") == 1
    assert value("mailferry_fetch_polls_total", **busy, result="error") == 1
    assert value("mailferry_fetch_polls_total", **fine, result="ok") == 1
    assert value("mailferry_fetch_messages_total", **fine) == 2
    assert value("mailferry_fetch_bytes_total", **fine) == 300
    assert value("mailferry_fetch_errors_total", **fine, reason="message") == 1
    assert value("mailferry_fetch_poll_lag_seconds", **fine) < 5
    assert REGISTRY.get_sample_value("mailferry_fetch_poll_lag_seconds", busy) is None  # never finished


def test_log_format_option_refuses_an_unknown_format() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailferry", "--log-format", "xml", "topics", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--log-format" in result.stderr
