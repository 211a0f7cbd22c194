"""Microsoft Graph over httpx with an app-only token (``mailferry.exchange.oauth``); thread-safe.

msal keeps the token and renews it before it expires; a 401 drops it and the request is
sent once more with a fresh token (a 401 means the request was not processed). TLS is
verified against the system CAs plus the target's ``ca_file``. Every failure leaves this
module as a classified mailferry error.
"""

from __future__ import annotations

from typing import Any

import httpx

from mailferry.config.targets import GraphTarget
from mailferry.exchange.graph.errors import classify_exception, classify_response, parse_retry_after
from mailferry.exchange.oauth import AppToken, app_registration, tls_context

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class GraphClient:
    def __init__(self, target: GraphTarget, *, tenant: str | None = None) -> None:
        self.target = target
        self.tenant = tenant
        self.base_url = target.base_url.rstrip("/")
        seconds = target.timeout.total_seconds()
        self.app_token = AppToken(app_registration(target), GRAPH_SCOPE, timeout=seconds, tenant=tenant)
        self._http = httpx.Client(
            timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
            limits=httpx.Limits(
                max_connections=max(16, target.concurrency * 4), max_keepalive_connections=16
            ),
            verify=tls_context(target.ca_file),
        )

    @property
    def tokens_fetched(self) -> int:
        return self.app_token.tokens_fetched

    def token(self) -> str:
        return self.app_token.token()

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
                self.app_token.forget()
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
