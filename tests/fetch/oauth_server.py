"""A loopback OAuth2 authorisation server for tests: client-credentials tokens and RFC 7662
style introspection, which the test Dovecot calls to check XOAUTH2/OAUTHBEARER logins."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class OAuthServer:
    def __init__(self) -> None:
        self.clients: dict[str, tuple[str, str]] = {}  # client_id -> (secret, user)
        self.tokens: dict[str, str] = {}  # token -> user
        self.introspections = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path == "/token":
                    client = owner.clients.get(form.get("client_id", ""))
                    if (
                        form.get("grant_type") != "client_credentials"
                        or client is None
                        or client[0] != form.get("client_secret")
                    ):
                        self._reply(401, {"error": "invalid_client"})
                    else:
                        token = "tok-" + secrets.token_hex(8)
                        owner.tokens[token] = client[1]  # type: ignore[index]
                        self._reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
                elif self.path == "/introspect":
                    owner.introspections += 1
                    user = owner.tokens.get(form.get("token", ""))
                    self._reply(200, {"active": True, "username": user} if user else {"active": False})
                else:
                    self._reply(404, {"error": "not_found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
