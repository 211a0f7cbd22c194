"""The tenant fence: which addresses belong to a tenant. Pure, no I/O.

A tenant owns exactly its ``accepted_domains`` (no subdomains, compared in their ASCII
IDNA form). Three places hold the fence, so that no single mistake lets mail cross it:
``config validate`` refuses a config that points outside (``mailferry.config.fence``), the
resolver sends a directory answer outside the tenant to its default mailbox, and the
delivery worker refuses any record whose recipient is outside its tenant. The last one
also stops a record a topic writer forged or an older stream version produced.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from mailferry.errors import PermanentError
from mailferry.mail.addresses import ascii_domain, normalise_address

if TYPE_CHECKING:
    from mailferry.config.models import MailferryConfig, Tenant
    from mailferry.schemas.records import Delivery

OUTSIDE_TENANT = "outside-tenant"


class CrossTenantError(PermanentError):
    """A delivery whose recipient lies outside its tenant's domains; never attempted."""

    reason_code = "cross-tenant-refused"


def canonical_domains(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(d for d in (ascii_domain(domain) for domain in domains) if d)


def tenant_domains(tenant: Tenant) -> frozenset[str]:
    return canonical_domains(tenant.accepted_domains)


def address_domain(address: str) -> str | None:
    """The canonical domain of one address, or None when ``address`` is not one address."""
    canonical = normalise_address(address)
    return canonical.rpartition("@")[2] if canonical else None


def inside(address: str, domains: frozenset[str]) -> bool:
    return address_domain(address) in domains


class TenantFence:
    """The delivery worker's check, with each tenant's domains computed once."""

    def __init__(self, config: MailferryConfig) -> None:
        self._domains = {tenant.id: tenant_domains(tenant) for tenant in config.tenants}

    def check(self, delivery: Delivery) -> None:
        """Raise ``CrossTenantError`` unless the recipient is inside the record's tenant."""
        tenant, recipient = delivery["tenant"], delivery["recipient"]
        domains = self._domains.get(tenant)
        if domains is None:
            raise CrossTenantError(f"tenant {tenant!r} is not configured: {recipient} refused")
        if not inside(recipient, domains):
            raise CrossTenantError(
                f"recipient {recipient} is outside tenant {tenant} ({', '.join(sorted(domains))}): refused"
            )
