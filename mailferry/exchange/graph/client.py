"""Microsoft Graph over httpx with an app-only (client credentials) token; thread-safe.

One token per target, fetched once and renewed a minute before it expires; a 401 drops it
and the request is sent once more with a fresh token (a 401 means the request was not
processed). Every failure leaves this module as a classified mailferry error.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from mailferry.config.targets import GraphTarget
from mailferry.errors import TenantError
from mailferry.exchange.graph.errors import classify_exception, classify_response, parse_retry_after

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class GraphClient:
    def __init__(self, target: GraphTarget, *, tenant: str | None = None) -> None:
        self.target = target
        self.tenant = tenant
        self.base_url = target.base_url.rstrip("/")
        self.token_url = (
            target.token_url or f"https://login.microsoftonline.com/{target.tenant_id}/oauth2/v2.0/token"
        )
        seconds = target.timeout.total_seconds()
        self._http = httpx.Client(
            timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
            limits=httpx.Limits(
                max_connections=max(16, target.concurrency * 4), max_keepalive_connections=16
            ),
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self.tokens_fetched = 0

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() > self._expires:
                self._token, lifetime = self._fetch_token()
                self._expires = time.monotonic() + max(0.0, lifetime - 60)
                self.tokens_fetched += 1
            return self._token

    def _fetch_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.target.client_id,
            "client_secret": self.target.client_secret.reveal(),
            "scope": GRAPH_SCOPE,
        }
        try:
            reply = self._http.post(self.token_url, data=form)
        except httpx.HTTPError as exc:
            raise classify_exception(exc, write=False, tenant=self.tenant) from exc
        if reply.status_code != 200:
            body = _json(reply)
            code = body.get("error") if isinstance(body.get("error"), str) else None
            raise classify_response(
                reply.status_code,
                code or ("invalid_client" if reply.status_code in (400, 401) else None),
                str(body.get("error_description", ""))[:200],
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
                tenant=self.tenant,
            )
        body = _json(reply)
        if "access_token" not in body:
            raise TenantError("the token endpoint answered without an access token", tenant=self.tenant)
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def _drop_token(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def request(
        self,
        method: str,
        path: str,
        *,
        write: bool,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Send, retrying once on 401 with a new token; the JSON answer, or a classified error."""
        for attempt in (1, 2):
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"}
            if content_type:
                headers["Content-Type"] = content_type
            try:
                reply = self._http.request(
                    method, f"{self.base_url}{path}", params=params, content=content, headers=headers
                )
            except httpx.HTTPError as exc:
                raise classify_exception(exc, write=write, tenant=self.tenant) from exc
            if reply.status_code == 401 and attempt == 1:
                self._drop_token(token)
                continue
            if reply.status_code >= 300:
                error = _json(reply).get("error")
                code = error.get("code") if isinstance(error, dict) else None
                text = error.get("message", "") if isinstance(error, dict) else reply.text[:200]
                raise classify_response(
                    reply.status_code,
                    code,
                    str(text),
                    retry_after=parse_retry_after(reply.headers.get("Retry-After")),
                    tenant=self.tenant,
                )
            return _json(reply)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
