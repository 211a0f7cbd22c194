"""An OAuth2 client-credentials token endpoint for the EMULATORS (not Microsoft Entra ID).

Answers ``POST /{tenant}/oauth2/v2.0/token`` the way the Microsoft identity platform does
for app-only access: client id and secret in the form body or as HTTP Basic, a scope that
ends in ``/.default``, a JSON answer with a bearer token, or ``invalid_client``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs

TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")


@dataclass(frozen=True)
class App:
    client_id: str
    secret: str
    tenant: str
    principal: str  # who the token acts as in the emulator (an account or "app")


class TokenIssuer:
    def __init__(self, scope_prefix: str) -> None:
        self.scope_prefix = scope_prefix
        self._apps: dict[str, App] = {}
        self._tokens: dict[str, App] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def add_app(self, client_id: str, secret: str, tenant: str, principal: str = "app") -> None:
        self._apps[client_id] = App(client_id, secret, tenant, principal)

    def principal(self, token: str) -> str | None:
        with self._lock:
            app = self._tokens.get(token)
        return app.principal if app else None

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def handle(self, path: str, authorization: str | None, body: bytes) -> tuple[int, bytes] | None:
        """``(status, JSON)`` for a token request, or None when ``path`` is not the token path."""
        match = TOKEN_PATH.match(path.split("?")[0])
        if match is None:
            return None
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return _error(401, "invalid_client", "malformed basic credentials")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is emulated")
        app = self._apps.get(client_id or "")
        if app is None or app.secret != secret or app.tenant != match.group("tenant"):
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        scope = form.get("scope", "")
        if scope != f"{self.scope_prefix}/.default":
            return _error(400, "invalid_scope", f"scope must be {self.scope_prefix}/.default")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = app
            self.issued += 1
        answer = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        return 200, json.dumps(answer).encode()


def _error(status: int, code: str, text: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": code, "error_description": text}).encode()
