"""An OAuth2 client-credentials token endpoint for the EMULATORS (not Microsoft Entra ID).

Answers ``POST /{tenant}/oauth2/v2.0/token`` the way the Microsoft identity platform does
for app-only access: client id and secret in the form body or as HTTP Basic, or a client
assertion (RFC 7523: a JWT signed with the private key of a certificate registered on the
app, checked as Entra ID checks it: x5t or x5t#S256 names that certificate, RS256 or PS256
signature by its key, aud = this token endpoint, iss = sub = client id, exp and jti
present, not expired, nbf when sent not in the future), a scope that ends in
``/.default``, a JSON answer with a bearer token, or ``invalid_client``.
``identity_emulator`` serves it over HTTPS for msal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class App:
    client_id: str
    secret: str | None
    tenant: str
    principal: str  # who the token acts as in the emulator (an account or "app")
    certificate: bytes | None = None  # PEM of the registered certificate (its public key)


class TokenIssuer:
    def __init__(self, scope_prefix: str) -> None:
        self.scope_prefix = scope_prefix
        self._apps: dict[str, App] = {}
        self._tokens: dict[str, App] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def add_app(
        self,
        client_id: str,
        secret: str | None,
        tenant: str,
        principal: str = "app",
        *,
        certificate: bytes | None = None,
    ) -> None:
        self._apps[client_id] = App(client_id, secret, tenant, principal, certificate)

    def tenants(self) -> set[str]:
        return {app.tenant for app in self._apps.values()}

    def serves(self, scope: str) -> bool:
        return scope == f"{self.scope_prefix}/.default"

    def principal(self, token: str) -> str | None:
        with self._lock:
            app = self._tokens.get(token)
        return app.principal if app else None

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def handle(
        self, path: str, authorization: str | None, body: bytes, *, endpoint: str | None = None
    ) -> tuple[int, bytes] | None:
        """``(status, JSON)`` for a token request, or None when ``path`` is not the token path.
        ``endpoint``: this token endpoint's URL as clients see it (a client assertion's aud)."""
        match = TOKEN_PATH.match(path.split("?")[0])
        if match is None:
            return None
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if "client_assertion" in form:
            return self._assertion_grant(form, match.group("tenant"), endpoint)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return _error(401, "invalid_client", "malformed basic credentials")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is emulated")
        app = self._apps.get(client_id or "")
        if app is None or app.secret is None or app.secret != secret or app.tenant != match.group("tenant"):
            return _error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        return self._issue(app, form)

    def _assertion_grant(self, form: dict[str, str], tenant: str, endpoint: str | None) -> tuple[int, bytes]:
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "only client_credentials is emulated")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _error(400, "invalid_request", "AADSTS50027: client_assertion_type is not jwt-bearer")
        assertion = form["client_assertion"]
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return _error(400, "invalid_request", "AADSTS50027: the client assertion is not a JWT")
        client_id = str(claims.get("iss", ""))
        app = self._apps.get(client_id)
        if app is None or app.tenant != tenant or (form.get("client_id") not in (None, client_id)):
            return _error(400, "unauthorized_client", "AADSTS700016: application not found in the tenant")
        if app.certificate is None:
            return _error(401, "invalid_client", "AADSTS700027: no certificate is registered on the app")
        certificate = x509.load_pem_x509_certificate(app.certificate)
        der = certificate.public_bytes(serialization.Encoding.DER)
        thumbprints = {
            "x5t": _b64url(hashlib.sha1(der).digest()),
            "x5t#S256": _b64url(hashlib.sha256(der).digest()),
        }
        # base64url with or without its padding (msal keeps it)
        if not any(str(header.get(name, "")).rstrip("=") == value for name, value in thumbprints.items()):
            return _error(
                401,
                "invalid_client",
                "AADSTS700027: the certificate that signed the assertion is not registered",
            )
        algorithm = header.get("alg")
        if algorithm not in ("RS256", "PS256"):
            return _error(401, "invalid_client", f"AADSTS5002730: algorithm {algorithm!r} is not accepted")
        try:
            jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=[algorithm],
                audience=endpoint,
                issuer=app.client_id,
                options={"require": ["aud", "exp", "iss", "jti", "sub"]},  # nbf checked when present
            )
        except jwt.PyJWTError as exc:
            return _error(401, "invalid_client", f"AADSTS700027: client assertion refused: {exc}")
        if claims.get("sub") != app.client_id:
            return _error(401, "invalid_client", "AADSTS700021: sub is not the client id")
        return self._issue(app, form)

    def _issue(self, app: App, form: dict[str, str]) -> tuple[int, bytes]:
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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
