"""One EWS connection per (tenant, target): endpoint, version, credentials, TLS, pool size.

exchangelib shares one connection pool and one back-off state per (endpoint, credentials),
so every mailbox of a tenant goes through the same ``Protocol``. The endpoint is configured
or autodiscovered once (never per message) and the version is configured or detected once.
The retry policy is always fail-fast: retries belong to mailferry's retry topics, and
exchangelib's ``FaultTolerance`` would retry a 401 as if the server were busy.
TLS settings (``verify_tls``, ``ca_file``) belong to this target and its endpoint alone
(``exchangelib_patches``), never to the whole process.
"""

from __future__ import annotations

import threading
from typing import Any

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    UTC,
    Account,
    Configuration,
    Credentials,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib.autodiscover import Autodiscovery
from exchangelib.protocol import FailFast, Protocol
from exchangelib.version import (
    EXCHANGE_2007,
    EXCHANGE_2007_SP1,
    EXCHANGE_2010,
    EXCHANGE_2010_SP1,
    EXCHANGE_2010_SP2,
    EXCHANGE_2013,
    EXCHANGE_2013_SP1,
    EXCHANGE_2016,
    EXCHANGE_2019,
    EXCHANGE_O365,
)

from mailferry.config.models import Tenant
from mailferry.config.targets import EwsTarget
from mailferry.errors import ConfigError
from mailferry.exchange.ews.exchangelib_patches import TlsSettings, TokenUrlOAuth2Credentials, tune_protocol

VERSIONS = {
    "exchange2007": EXCHANGE_2007,
    "exchange2007_sp1": EXCHANGE_2007_SP1,
    "exchange2010": EXCHANGE_2010,
    "exchange2010_sp1": EXCHANGE_2010_SP1,
    "exchange2010_sp2": EXCHANGE_2010_SP2,
    "exchange2013": EXCHANGE_2013,
    "exchange2013_sp1": EXCHANGE_2013_SP1,
    "exchange2016": EXCHANGE_2016,
    "exchange2019": EXCHANGE_2019,
    "exchangeonline": EXCHANGE_O365,
    "office365": EXCHANGE_O365,
}
EXO_SCOPE = ["https://outlook.office365.com/.default"]


def parse_version(name: str | None) -> Version | None:
    if name is None:
        return None
    build = VERSIONS.get(name.lower().replace(" ", ""))
    if build is None:
        raise ConfigError(f"EWS version {name!r} is not one of {sorted(VERSIONS)}")
    return Version(build=build)


class EwsConnection:
    """Builds and caches the exchangelib objects of one target; thread-safe."""

    def __init__(self, tenant: Tenant, target: EwsTarget) -> None:
        self.tenant = tenant
        self.target = target
        self._lock = threading.Lock()
        self._config: Configuration | None = None
        self.tls: TlsSettings | None = None
        self._accounts: dict[str, Account] = {}
        self.credentials = self._credentials()
        self.access_type = IMPERSONATION if target.impersonation else DELEGATE

    def _credentials(self) -> Credentials | OAuth2Credentials:
        t = self.target
        if t.auth == "oauth2":
            if not (t.client_id and t.client_secret and t.tenant_id):
                raise ConfigError(f"target {t.name}: oauth2 needs tenant_id, client_id and client_secret")
            kwargs: dict[str, Any] = {
                "client_id": t.client_id,
                "client_secret": t.client_secret.reveal(),
                "tenant_id": t.tenant_id,
                # app-only tokens need an impersonation header on every request, ResolveNames too
                "identity": Identity(primary_smtp_address=self.tenant.default_mailbox),
            }
            if t.token_url:
                return TokenUrlOAuth2Credentials(token_endpoint=t.token_url, **kwargs)
            return OAuth2Credentials(**kwargs)
        if not (t.username and t.password):
            raise ConfigError(f"target {t.name}: {t.auth} needs username and password")
        return Credentials(t.username, t.password.reveal())

    @property
    def config(self) -> Configuration:
        with self._lock:
            if self._config is None:
                self._config = self._build_config()
            return self._config

    def _build_config(self) -> Configuration:
        t = self.target
        endpoint = t.endpoint or self._autodiscover()
        self.tls = TlsSettings(endpoint, str(t.ca_file) if t.ca_file else t.verify_tls)
        config = Configuration(
            service_endpoint=endpoint,
            credentials=self.credentials,
            auth_type={"basic": BASIC, "ntlm": NTLM, "oauth2": OAUTH2}[t.auth],
            version=parse_version(t.version),
            retry_policy=FailFast(),
            max_connections=t.concurrency,
        )
        self._tune(Protocol(config=config))
        return config

    def _tune(self, protocol: Protocol) -> Protocol:
        assert self.tls is not None, "the config is built first"
        return tune_protocol(protocol, timeout=self.target.timeout.total_seconds(), tls=self.tls)

    def _autodiscover(self) -> str:
        """Once per process and target, from the tenant's default mailbox."""
        _, protocol = Autodiscovery(
            email=self.tenant.default_mailbox, credentials=self.credentials
        ).discover()
        return str(protocol.service_endpoint)

    @property
    def protocol(self) -> Protocol:
        return self._tune(Protocol(config=self.config))

    def account(self, primary_address: str) -> Account:
        """The exchangelib Account of one mailbox (no I/O; its folders load on first use)."""
        key = primary_address.lower()
        with self._lock:
            account = self._accounts.get(key)
        if account is not None:
            return account
        account = Account(
            primary_address,
            config=self.config,
            autodiscover=False,
            access_type=self.access_type,
            default_timezone=UTC,
        )
        self._tune(account.protocol)
        with self._lock:
            return self._accounts.setdefault(key, account)

    def close(self) -> None:
        with self._lock:
            config, self._config = self._config, None
            self._accounts.clear()
        if config is not None:
            try:
                protocol = Protocol[config][0]
            except KeyError:
                return
            protocol.close()
            del Protocol[config]
