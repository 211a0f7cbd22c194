"""The server life cycle every HTTP emulator shares (EWS, Graph, Entra ID).

One piece so the emulators agree on what "started" and "stopped" mean: a threading server on
127.0.0.1 and a free port, a backlog deep enough for a benchmark's burst of connections, TLS
when the emulator has a certificate (the handshake in the request's thread, so one refusing
client stalls nobody), and a ``stop()`` that releases the port and may be called any number
of times — a test that fails half-way still leaves nothing listening.
"""

from __future__ import annotations

import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self

from mailferry_testkit.certs import TestPki
from mailferry_testkit.served import Served

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once; the default backlog of 5 resets them


class LoopbackHttpEmulator(Served):
    """Subclasses name themselves (``banner``) and give their request handler class."""

    banner: ClassVar[str]  # e.g. "GRAPH EMULATOR (not Microsoft Graph)", logged on start
    _httpd: ThreadingHTTPServer | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def tls_pki(self) -> TestPki | None:
        """The certificate to serve HTTPS with; plain HTTP when None."""
        return None

    def start(self) -> Self:
        handler = type("Handler", (self.handler_class(),), {"emulator": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        pki = self.tls_pki()
        if pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.cert_file, pki.key_file)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, name=self.banner, daemon=True).start()
        log.info("%s listening on %s", self.banner, self.origin)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the emulator first"
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.tls_pki() is not None else "http"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"
