"""ENTRA ID EMULATOR (not Microsoft Entra ID): a tenant's OpenID configuration and v2.0 token
endpoint over HTTPS on 127.0.0.1, for msal as mailferry uses it.

msal reads ``{authority}/v2.0/.well-known/openid-configuration`` before the first token and
accepts only an https authority, so this server has its own throwaway CA (``ca_file``): the
client verifies it as it would verify login.microsoftonline.com. It serves the token issuers
of the EWS and GRAPH EMULATORS (each picked by the scope asked for), so one authority gives
tokens for both resources; the issuers check secrets and client assertions
(``ews_emulator.oauth``).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from mailferry_testkit.certs import TestPki, make_test_pki
from mailferry_testkit.ews_emulator.oauth import TokenIssuer
from mailferry_testkit.loopback_http import LoopbackHttpEmulator

log = logging.getLogger(__name__)
DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")


class IdentityEmulator(LoopbackHttpEmulator):
    """ENTRA ID EMULATOR — not Microsoft Entra ID. ``start()`` serves HTTPS on a free port."""

    banner = "ENTRA ID EMULATOR (not Microsoft Entra ID)"

    def __init__(self, issuers: tuple[TokenIssuer, ...], *, pki: TestPki | None = None) -> None:
        if pki is None:
            self._folder = tempfile.TemporaryDirectory(prefix="mailferry-identity-")
            pki = make_test_pki(Path(self._folder.name), ca_name="mailferry identity emulator CA")
        self.pki = pki
        self.issuers = issuers
        self.discoveries = 0

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    def tls_pki(self) -> TestPki:
        return self.pki

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def authority(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}"

    def token_endpoint(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}/oauth2/v2.0/token"

    def openid_configuration(self, tenant: str) -> dict[str, str] | None:
        if not any(tenant in issuer.tenants() for issuer in self.issuers):
            return None
        return {
            "token_endpoint": self.token_endpoint(tenant),
            "authorization_endpoint": f"{self.origin}/{tenant}/oauth2/v2.0/authorize",
            "issuer": f"{self.origin}/{tenant}/v2.0",
            "token_endpoint_auth_methods_supported": "client_secret_post private_key_jwt client_secret_basic",
        }

    def issuer_for(self, body: bytes) -> TokenIssuer:
        scope = parse_qs(body.decode("utf-8", "replace")).get("scope", [""])[0]
        return next((issuer for issuer in self.issuers if issuer.serves(scope)), self.issuers[0])


class _Handler(BaseHTTPRequestHandler):
    emulator: IdentityEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ENTRA ID EMULATOR: " + format, *args)

    def do_GET(self) -> None:
        match = DISCOVERY.match(self.path.split("?")[0])
        config = self.emulator.openid_configuration(match.group("tenant")) if match else None
        if config is None:
            error = {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."}
            self._reply(400, json.dumps(error).encode())
            return
        self.emulator.discoveries += 1
        self._reply(200, json.dumps(config).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0]
        answer = self.emulator.issuer_for(body).handle(
            path, self.headers.get("Authorization"), body, endpoint=f"{self.emulator.origin}{path}"
        )
        self._reply(*(answer or (404, b'{"error": "not_found"}')))

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class IdentityHost(LoopbackHttpEmulator):
    """An emulator with a token issuer: its ENTRA ID EMULATOR, started on first use and
    stopped with it.

    ``authority(tenant)`` and ``identity_ca_file`` are what a target's config needs; the
    HTTPS certificate is the emulator's own when it serves TLS (one ``ca_file`` for both).
    """

    oauth: TokenIssuer
    _identity: IdentityEmulator | None = None

    @property
    def identity(self) -> IdentityEmulator:
        if self._identity is None:
            self._identity = IdentityEmulator((self.oauth,), pki=self.tls_pki()).start()
        return self._identity

    def authority(self, tenant: str) -> str:
        return self.identity.authority(tenant)

    @property
    def identity_ca_file(self) -> Path:
        return self.identity.ca_file

    def stop(self) -> None:
        identity, self._identity = self._identity, None
        if identity is not None:
            identity.stop()
        super().stop()


def app_certificate(common_name: str = "mailferry app") -> tuple[str, str, str]:
    """An app's credential as the Entra portal takes it: a self-signed RSA 2048 certificate.
    ``(private key PEM, certificate PEM, SHA-1 thumbprint in hex)``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, cert.fingerprint(hashes.SHA1()).hex().upper()
