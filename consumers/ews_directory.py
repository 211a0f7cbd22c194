"""Directory look-up through EWS ResolveNames (``mailferry.directory.Directory``), cached.

Two traps of ResolveNames shape this module: without the ``smtp:`` prefix it matches only
primary addresses, and its match is a *prefix* match (``smtp:bob@ex`` finds
``bob@example.com``). So every look-up uses the prefix and then keeps only an exact match
on the primary address or one of the contact's listed addresses. Answers (also "no such
mailbox") are cached with a time to live, since recipient resolution asks per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from exchangelib.errors import ErrorNameResolutionNoResults
from mailferry.consumers.ews_errors import classify

from mailferry.config.models import Tenant
from mailferry.directory import CachedDirectory, Directory, LookupDirectory


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


def directory_for(tenant: Tenant) -> Directory | None:
    """The live directory of a tenant's default target (EWS or Graph), for recipient
    resolution in the stream app; None for targets without a directory (SMTP, Maildir).
    Uncached: the stream app puts its configured TTL cache in front.

    Blocking (exchangelib and httpx are synchronous): call it from a thread, not an event loop.
    """
    target = tenant.target()
    if target.kind == "ews":
        from mailferry.consumers.ews_connect import EwsConnection

        connection = EwsConnection(tenant, target)
        return LookupDirectory(ews_lookup(lambda: connection.protocol, tenant=tenant.id))
    if target.kind == "graph":
        from mailferry.consumers.graph import graph_lookup
        from mailferry.consumers.graph_client import GraphClient

        return LookupDirectory(graph_lookup(GraphClient(target, tenant=tenant.id)))
    return None


__all__ = ["CachedDirectory", "directory_for", "ews_lookup", "exact_match"]
