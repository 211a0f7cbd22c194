"""A replica's HTTP API, so that ``audit trace`` on another machine can ask it.

Two endpoints: ``GET /positions?k=<hash>&k=...`` answers the positions and first sighting of
those key hashes as JSON, ``GET /healthz`` answers 200. Only hashes cross the wire, never
Message-IDs or addresses. The standard library's threading HTTP server is enough for a
handful of lookups per second; it binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from mailferry.audit_index.store import IndexStore

MAX_KEYS = 2000


def _handler(folder: Path, topic: str) -> type[BaseHTTPRequestHandler]:
    local = threading.local()

    def store() -> IndexStore:
        if not hasattr(local, "store"):
            local.store = IndexStore(folder, topic=topic, readonly=True)
        result: IndexStore = local.store
        return result

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/healthz":
                self._send(200, {"status": "ok"})
                return
            if url.path != "/positions":
                self._send(404, {"error": "not found"})
                return
            try:
                hashes = [int(k) for k in parse_qs(url.query).get("k", [])][:MAX_KEYS]
            except ValueError:
                self._send(400, {"error": "k must be integers"})
                return
            index = store()
            sighting = index.first_sighting(hashes)
            self._send(
                200,
                {
                    "positions": sorted([p.partition, p.offset] for p in index.lookup(hashes)),
                    "first_sighting": None
                    if sighting is None
                    else [sighting.first_at_ms, sighting.position.partition, sighting.position.offset],
                },
            )

    return Handler


def serve(folder: Path, topic: str, host: str, port: int) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; the caller shuts it down."""
    server = ThreadingHTTPServer((host, port), _handler(folder, topic))
    threading.Thread(target=server.serve_forever, name="audit-index-http", daemon=True).start()
    return server
