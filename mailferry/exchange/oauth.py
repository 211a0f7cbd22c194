"""App-only tokens from Microsoft Entra ID (client credentials) through msal, for EWS and Graph.

One ``msal.ConfidentialClientApplication`` per (target, resource): msal keeps the token and
renews it before it expires; ``forget`` drops it after the API refused it. The app proves
itself with a client secret or with a certificate: the private key in PEM, plus either the
certificate in the same PEM (msal then signs a PS256 assertion carrying its SHA-256
thumbprint) or the SHA-1 thumbprint the portal shows (an RS256 assertion). Both come from
secret references and are read only here, when the first token is needed.

The authority is ``https://login.microsoftonline.com/<tenant_id>`` unless configured
(sovereign clouds, emulators). msal's instance discovery asks Microsoft whether a host is a
known authority, which needs the internet and refuses every other host; it is off, but the
tenant's OpenID configuration is still read from the authority over verified TLS (system CAs
plus the target's ``ca_file``; ``verify_tls = false`` never reaches the identity provider).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters

from mailferry.config.targets import EwsTarget, GraphTarget
from mailferry.config.types import SecretRef
from mailferry.errors import ConfigError, MailferryError, TenantError, TransientError

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
TOKEN_SUFFIX = "/oauth2/v2.0/token"
# what the identity provider answers when the app's credentials are wrong: the tenant stops
_REFUSED = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_request", "invalid_scope"}


@dataclass(frozen=True)
class AppRegistration:
    """What the config says about one Entra app registration (field names as in the config)."""

    target: str
    tenant_id: str
    client_id: str
    client_secret: SecretRef | None
    client_certificate: SecretRef | None
    client_certificate_thumbprint: str | None
    authority: str | None
    token_url: str | None
    ca_file: Path | None


def app_registration(target: EwsTarget | GraphTarget) -> AppRegistration:
    if not (target.tenant_id and target.client_id):
        raise ConfigError(f"target {target.name}: OAuth2 needs tenant_id and client_id")
    return AppRegistration(
        target=target.name,
        tenant_id=target.tenant_id,
        client_id=target.client_id,
        client_secret=target.client_secret,
        client_certificate=target.client_certificate,
        client_certificate_thumbprint=target.client_certificate_thumbprint,
        authority=target.authority,
        token_url=target.token_url,
        ca_file=target.ca_file,
    )


def authority_of(app: AppRegistration) -> str:
    """The configured authority; from a (deprecated) ``token_url`` its authority part."""
    if app.authority:
        return app.authority.rstrip("/")
    if app.token_url:
        url = app.token_url.rstrip("/")
        if not url.endswith(TOKEN_SUFFIX) or urlsplit(url).scheme != "https":
            raise ConfigError(
                f"target {app.target}: token_url must be an https v2.0 token endpoint "
                f"(https://host/<tenant>{TOKEN_SUFFIX}); better set authority = 'https://host/<tenant>'"
            )
        return url[: -len(TOKEN_SUFFIX)]
    return f"{DEFAULT_AUTHORITY_HOST}/{app.tenant_id}"


def credential_of(app: AppRegistration) -> str | dict[str, str]:
    """msal's ``client_credential``: the secret, or the private key with its thumbprint or certificate."""
    if app.client_certificate is None:
        if app.client_secret is None:
            raise ConfigError(f"target {app.target}: client_secret or client_certificate is needed")
        return app.client_secret.reveal()
    pem = app.client_certificate.reveal()
    key, certificate = _pem_blocks(pem)
    if key is None:
        raise ConfigError(
            f"target {app.target}: client_certificate ({app.client_certificate.reference}) "
            "holds no PEM private key"
        )
    credential = {"private_key": key}
    if app.client_certificate_thumbprint:
        if certificate is not None and _sha1_thumbprint(certificate) != app.client_certificate_thumbprint:
            raise ConfigError(
                f"target {app.target}: client_certificate_thumbprint is not the thumbprint of the "
                f"certificate in client_certificate ({app.client_certificate.reference})"
            )
        credential["thumbprint"] = app.client_certificate_thumbprint
    elif certificate is not None:
        credential["public_certificate"] = certificate
    else:
        raise ConfigError(
            f"target {app.target}: client_certificate ({app.client_certificate.reference}) holds no "
            "certificate: append it to the PEM or set client_certificate_thumbprint"
        )
    return credential


def _pem_blocks(pem: str) -> tuple[str | None, str | None]:
    key = certificate = None
    for block in pem.split("-----END ")[:-1]:
        begin = block.find("-----BEGIN ")
        if begin < 0:
            continue
        label = block[begin + 11 :].split("-----", 1)[0]
        text = block[begin:] + "-----END " + label + "-----\n"
        if label.endswith("PRIVATE KEY") and key is None:
            key = text
        elif label == "CERTIFICATE" and certificate is None:
            certificate = text
    return key, certificate


def _sha1_thumbprint(certificate: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(certificate.encode())
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus ``ca_file``; hostnames and chains always verified."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read ca_file {ca_file}: {exc}") from exc
    return context


class _ContextAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class AppToken:
    """The app-only token of one registration for one resource (``scope``); thread-safe."""

    def __init__(
        self, app: AppRegistration, scope: str, *, timeout: float, tenant: str | None = None
    ) -> None:
        self.app = app
        self.scope = scope
        self.timeout = timeout
        self.tenant = tenant
        self.authority = authority_of(app)
        self._lock = threading.Lock()
        self._msal: Any = None
        self.tokens_fetched = 0

    def _client(self) -> Any:
        if self._msal is None:
            import msal

            session = requests.Session()
            session.mount("https://", _ContextAdapter(tls_context(self.app.ca_file)))
            try:
                self._msal = msal.ConfidentialClientApplication(
                    self.app.client_id,
                    client_credential=credential_of(self.app),
                    authority=self.authority,
                    validate_authority=False,
                    instance_discovery=False,
                    http_client=session,
                    timeout=self.timeout,
                )
            except (requests.RequestException, ValueError) as exc:
                raise self._failure(exc) from exc
        return self._msal

    def token(self) -> str:
        """A valid access token (msal's cached one while it lasts)."""
        return str(self.token_answer()["access_token"])

    def token_answer(self) -> Mapping[str, Any]:
        """msal's answer: ``access_token``, ``token_type``, ``expires_in``."""
        with self._lock:
            client = self._client()
            try:
                answer = client.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as exc:
                raise self._failure(exc) from exc
            if "access_token" not in answer:
                raise self._refusal(answer)
            if answer.get("token_source") == "identity_provider":
                self.tokens_fetched += 1
            return dict(answer)

    def forget(self) -> None:
        """Drop the cached token (the API refused it); the next ``token`` asks again."""
        with self._lock:
            if self._msal is not None:
                self._msal.remove_tokens_for_client()

    def _refusal(self, answer: Mapping[str, Any]) -> MailferryError:
        code = str(answer.get("error") or "no access token")
        detail = str(answer.get("error_description") or "")[:200]
        text = f"token from {self.authority} for app {self.app.client_id}: {code}: {detail}"
        if code in _REFUSED:
            return TenantError(text, tenant=self.tenant, reason_code="bad-credentials")
        return TransientError(text, reason_code="token-unavailable")

    def _failure(self, exc: BaseException) -> MailferryError:
        text = f"token from {self.authority} for app {self.app.client_id}: {type(exc).__name__}: {exc}"
        if isinstance(exc, requests.exceptions.SSLError):
            return TenantError(text[:400], tenant=self.tenant, reason_code="tls-refused")
        if isinstance(exc, ValueError):  # msal: the authority's OpenID configuration is not there
            return TenantError(text[:400], tenant=self.tenant, reason_code="bad-authority")
        return TransientError(text[:400], reason_code="connect-failed")
