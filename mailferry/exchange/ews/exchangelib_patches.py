"""Every place mailferry reaches into exchangelib's internals, in this one module.

exchangelib 5.x has no per-connection setting for TLS verification, the request timeout,
the retry wait or the pool-shrinking behaviour; its only TLS knob is a class attribute
(``BaseProtocol.HTTP_ADAPTER_CLS``) shared by every connection of the process, so one
tenant's ``verify_tls = false`` or private CA would apply to every other tenant. Instead
each ``Protocol`` (one per endpoint and credentials) is tuned on the instance, and every
session it creates gets an adapter of its own target: the target's ``verify`` for a request
to exactly its endpoint, strict verification for anything else. Nothing is set on a class.
exchangelib also has no streamed request body: ``StreamedCreateItem`` overrides ``wrap`` so
large messages are sent from a stream (``consumers/targets/ews/stream.py``).

The names used are listed in ``PATCHED``; ``tests/deliver_ews/test_exchangelib_patches.py``
fails when exchangelib renames one or changes a signature relied on, when another module
overrides exchangelib, and when pyproject's upper bound (below the next minor release, so an
upgrade is a deliberate step) is gone.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
from exchangelib import OAuth2Credentials
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.protocol import BaseProtocol, Protocol
from exchangelib.services import CreateItem

from mailferry.errors import ConfigError

PATCHED: tuple[tuple[type, str], ...] = (
    (BaseProtocol, "create_session"),  # wrapped per instance: mounts the target's TLS adapter
    (BaseProtocol, "decrease_poolsize"),  # replaced per instance: see keep_pool_size
    (BaseProtocol, "TIMEOUT"),
    (BaseProtocol, "RETRY_WAIT"),
    (BaseProtocol, "CONNECTIONS_PER_SESSION"),  # read for the adapter's pool size
    (OAuth2Credentials, "token_url"),  # overridden: a configurable token endpoint
    (CreateItem, "wrap"),  # overridden by consumers/targets/ews/stream.py (streamed MimeContent)
)
_DEFAULT_PORTS = {"https": 443, "http": 80}
_lock = threading.Lock()


@dataclass(frozen=True)
class TlsSettings:
    """How one target verifies its endpoint: True (system CAs), False, or a CA bundle path."""

    endpoint: str
    verify: bool | str


def _origin_and_path(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme), parts.path


def same_endpoint(url: str, endpoint: str) -> bool:
    """Exactly the endpoint (scheme, host, port and path; the query is ignored), not a prefix."""
    return _origin_and_path(url) == _origin_and_path(endpoint)


class TargetTlsAdapter(requests.adapters.HTTPAdapter):
    """One target's TLS settings, for its endpoint only; never looser elsewhere."""

    def __init__(self, tls: TlsSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tls = tls

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if same_endpoint(str(request.url), self.tls.endpoint):
            kwargs["verify"] = self.tls.verify
        elif kwargs.get("verify") is False:
            kwargs["verify"] = True
        return super().send(request, *args, **kwargs)


def mount_tls(session: requests.Session, tls: TlsSettings, pool_size: int) -> requests.Session:
    """Replace every adapter of ``session`` by the target's (same pool settings as exchangelib's)."""
    for prefix, old in list(session.adapters.items()):
        adapter = TargetTlsAdapter(
            tls, pool_block=True, pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0
        )
        session.mount(prefix, adapter)
        old.close()
    return session


def keep_pool_size() -> None:
    """Replaces exchangelib's ``decrease_poolsize``, which it calls on every busy answer.

    Shrinking takes the pool lock and then waits for a free session; when the pool is empty
    and below its maximum, that wait tries to grow the pool under the same lock and the
    process deadlocks (seen at 32 threads against a 27-request budget). Back-off is the
    retry topics' job here, so the pool keeps its size; raising "minimum reached" makes
    exchangelib give up instead of retrying ErrorExceededConnectionCount in a loop.
    """
    raise SessionPoolMinSizeReached("mailferry keeps the EWS session pool; the worker backs off")


def tune_protocol(protocol: Protocol, *, timeout: float, tls: TlsSettings) -> Protocol:
    """Fail-fast timing, a fixed pool and the target's TLS on this ``Protocol`` instance.

    exchangelib shares one ``Protocol`` per (endpoint, credentials) in the process; two
    targets that share one but ask for different TLS settings are refused rather than
    letting the first one decide for both.
    """
    with _lock:
        owner = protocol.__dict__.get("_mailferry_tls")
        if owner is not None and owner != tls:
            raise ConfigError(
                f"two EWS targets use {tls.endpoint} with the same credentials but different TLS "
                "settings (verify_tls / ca_file); give them the same settings"
            )
        protocol.TIMEOUT = timeout
        protocol.RETRY_WAIT = 0  # a busy answer without BackOffMilliseconds keeps retry_after None
        protocol.decrease_poolsize = keep_pool_size
        if owner is None:
            create = protocol.create_session
            pool_size = protocol.CONNECTIONS_PER_SESSION

            def create_session() -> requests.Session:
                return mount_tls(create(), tls, pool_size)

            protocol.create_session = create_session
            protocol.__dict__["_mailferry_tls"] = tls
            protocol.close()  # no session made before this point may stay in the pool
    return protocol


class TokenUrlOAuth2Credentials(OAuth2Credentials):  # type: ignore[misc]
    """App-only OAuth2 with a configurable token endpoint (sovereign clouds, emulators)."""

    def __init__(self, *args: Any, token_endpoint: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._token_endpoint = token_endpoint

    @property
    def token_url(self) -> str:
        return self._token_endpoint


def split_envelope(envelope: bytes, placeholder: bytes) -> tuple[bytes, bytes]:
    """Head and tail around the one occurrence of ``placeholder``'s base64 form."""
    marker = base64.b64encode(placeholder)
    head, found, tail = envelope.partition(marker)
    if not found or marker in tail:
        raise RuntimeError("the MimeContent placeholder is not exactly once in the CreateItem envelope")
    return head, tail


class StreamedCreateItem(CreateItem):  # type: ignore[misc]
    """exchangelib's CreateItem whose serialised envelope is handed, split at a placeholder in
    MimeContent, to ``body`` (the streaming request body of ``consumers/targets/ews/stream.py``):
    exchangelib builds no streamed body, and ``wrap`` is where the bytes leave its hands."""

    def __init__(self, *args: Any, body: Callable[[bytes, bytes], Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._body = body
        self.placeholder = b"MFSTREAM" + uuid.uuid4().bytes  # 24 bytes: base64 without padding

    def wrap(self, content: Any, api_version: str | None = None) -> Any:
        head, tail = split_envelope(super().wrap(content=content, api_version=api_version), self.placeholder)
        return self._body(head, tail)
