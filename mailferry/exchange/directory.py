"""The Exchange directory (``mailferry.directory.Directory``): EWS ResolveNames or Graph users.

Shared by two stages: the stream app resolves recipients with it, and the EWS and Graph
targets map an alias to the primary address before writing (impersonating an alias fails).

Two traps of ResolveNames shape this module: without the ``smtp:`` prefix it matches only
primary addresses, and its match is a *prefix* match (``smtp:bob@ex`` finds
``bob@example.com``). So every look-up uses the prefix and then keeps only an exact match
on the primary address or one of the contact's listed addresses. Answers (also "no such
mailbox") are cached with a time to live, since recipient resolution asks per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from exchangelib.errors import ErrorNameResolutionNoResults

from mailferry.config.models import Tenant
from mailferry.directory import CachedDirectory, Directory, LookupDirectory
from mailferry.exchange.ews.errors import classify

if TYPE_CHECKING:
    from mailferry.exchange.graph.client import GraphClient


def exact_match(address: str, resolutions: Iterable[Any]) -> str | None:
    """Primary SMTP address of the resolution that is exactly ``address``, else None.

    ``resolutions`` are what exchangelib returns with full contact data: (Mailbox, Contact)
    pairs, or an exception instance when nothing matched.
    """
    wanted = address.strip().lower()
    for resolution in resolutions:
        if isinstance(resolution, BaseException):
            continue
        mailbox, contact = resolution if isinstance(resolution, tuple) else (resolution, None)
        primary = getattr(mailbox, "email_address", None)
        if not primary or getattr(mailbox, "routing_type", "SMTP") not in (None, "SMTP"):
            continue
        known = {primary.lower()}
        for entry in getattr(contact, "email_addresses", None) or []:
            email = (entry.email or "").strip()
            if email.lower().startswith("smtp:"):
                email = email[5:]
            known.add(email.lower())
        if wanted in known:
            return str(primary)
    return None


def ews_lookup(protocol_of: Callable[[], Any], *, tenant: str | None = None) -> Callable[[str], str | None]:
    """ResolveNames with the ``smtp:`` prefix and full contact data (the aliases are listed
    only there), then the exact-match check."""

    def ask(address: str) -> str | None:
        try:
            resolutions = list(
                protocol_of().resolve_names([f"smtp:{address}"], return_full_contact_data=True)
            )
        except ErrorNameResolutionNoResults:
            return None
        except Exception as exc:
            raise classify(exc, write=False, tenant=tenant) from exc
        return exact_match(address, resolutions)

    return ask


def graph_lookup(client: GraphClient) -> Callable[[str], str | None]:
    """The user whose proxyAddresses hold exactly ``smtp:<address>``; its primary ``mail``."""

    def ask(address: str) -> str | None:
        escaped = address.replace("'", "''")
        answer = client.request(
            "GET",
            "/v1.0/users",
            write=False,
            params={
                "$filter": f"proxyAddresses/any(p:p eq 'smtp:{escaped}')",
                "$select": "mail,proxyAddresses",
            },
        )
        for user in answer.get("value", []):
            proxies = {str(p).lower() for p in user.get("proxyAddresses", [])}
            if f"smtp:{address.lower()}" in proxies and user.get("mail"):
                return str(user["mail"])
        return None

    return ask


def directory_for(tenant: Tenant) -> Directory | None:
    """The live directory of a tenant's default target (EWS or Graph), for recipient
    resolution in the stream app; None for targets without a directory (SMTP, Maildir).
    Uncached: the stream app puts its configured TTL cache in front.

    Blocking (exchangelib and httpx are synchronous): call it from a thread, not an event loop.
    """
    target = tenant.target()
    if target.kind == "ews":
        from mailferry.exchange.ews.connect import EwsConnection

        connection = EwsConnection(tenant, target)
        return LookupDirectory(ews_lookup(lambda: connection.protocol, tenant=tenant.id))
    if target.kind == "graph":
        from mailferry.exchange.graph.client import GraphClient

        return LookupDirectory(graph_lookup(GraphClient(target, tenant=tenant.id)))
    return None


__all__ = ["CachedDirectory", "directory_for", "ews_lookup", "exact_match", "graph_lookup"]
