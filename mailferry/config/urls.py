"""URLs that credentials are sent to (token endpoints, EWS and Graph): https only, except to this machine.

Loopback ``http://`` stays allowed because it never leaves the host (the test OAuth server
and the EWS/Graph EMULATORS listen there). A URL with a user or password in it is refused:
URLs are logged, the secret fields are not.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_credential_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:
        raise PydanticCustomError("url", "expected an https:// URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise PydanticCustomError("url", "expected an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise PydanticCustomError(
            "url_credentials", "credentials in a URL are refused: use the username and secret fields"
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise PydanticCustomError(
            "url_insecure",
            "http:// would send credentials in clear: use https:// (http:// only to a loopback address)",
        )
    return value


CredentialUrl = Annotated[str, AfterValidator(check_credential_url)]
