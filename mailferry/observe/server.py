"""One HTTP port per role process: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

The probes share the metrics port so one container port serves the scraper and the kubelet.
The standard library's threading server is enough for a scrape every few seconds; a probe
answers from memory and never touches Kafka.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mailferry.config.models import MailferryConfig
from mailferry.observe import logs
from mailferry.observe.health import HEALTH, Health
from mailferry.observe.lag import LagProbe

log = logging.getLogger(__name__)


def handler_for(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                return
            if path in ("/healthz", "/readyz"):
                verdict = health.liveness() if path == "/healthz" else health.readiness()
                self._send(200 if verdict.ok else 503, f"{verdict.reason}\n".encode(), "text/plain")
                return
            self._send(404, b"not found\n", "text/plain")

    return Handler


class Observer:
    """The running endpoint and lag probe of one role; ``close`` stops both."""

    def __init__(self, server: ThreadingHTTPServer | None, probe: LagProbe | None) -> None:
        self.server = server
        self.probe = probe

    @property
    def port(self) -> int | None:
        return None if self.server is None else self.server.server_address[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.probe is not None:
            self.probe.stop()


def observe(config: MailferryConfig, role: str, servers: list[str], group: str | None = None) -> Observer:
    """Serve this role's endpoint when ``[metrics]`` gives it a port, and measure the lag of
    ``group``; a port already taken is logged, not fatal (the role still does its work)."""
    logs.apply(role, logs.chosen(config))
    settings = config.metrics
    HEALTH.stuck_after = settings.stuck_after.total_seconds()
    port = settings.port_of(role)
    if port is None:
        return Observer(None, None)
    try:
        server = ThreadingHTTPServer((settings.host, port), handler_for(HEALTH))
    except OSError as exc:
        log.warning("metrics endpoint of %s on %s:%s not started: %s", role, settings.host, port, exc)
        return Observer(None, None)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    probe = None
    if group is not None:
        probe = LagProbe(config.kafka, servers, group, settings.lag_interval.total_seconds())
        probe.start()
    log.info("%s: metrics, /healthz and /readyz on %s:%s", role, settings.host, server.server_address[1])
    return Observer(server, probe)
