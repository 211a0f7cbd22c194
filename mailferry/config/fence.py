"""The tenant fence in the configuration: nothing a tenant configures points into another.

Checked after the models validated, over the whole file, since overlapping domains are a
relation between tenants that no single model sees. Each problem names the field that
holds the offending value so the loader can point at its line:

- two tenants accepting the same domain (mail for it would be routed by whichever tenant's
  source fetched it);
- an alias target, an ``address_map`` target, a rule's ``to``, a personal source's
  ``deliver_to`` or the default mailbox outside the tenant's own ``accepted_domains``.

``address_map`` keys are external addresses by design and are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailferry.config.locate import Path
from mailferry.config.models import MailferryConfig, Tenant
from mailferry.fence import address_domain, tenant_domains
from mailferry.mail.addresses import ascii_domain

Problem = tuple[Path, str]


def _outside(loc: Path, what: str, value: str, tenant: Tenant, domains: frozenset[str]) -> Iterator[Problem]:
    domain = address_domain(value)
    if domain is None:
        yield loc, f"{what} {value!r} is not a mail address"
    elif domain not in domains:
        owned = ", ".join(sorted(domains))
        yield loc, f"{what} {value!r} is outside tenant {tenant.id}'s accepted_domains ({owned})"


def _tenant_values(index: int, tenant: Tenant) -> Iterator[Problem]:
    domains = tenant_domains(tenant)
    here: Path = ("tenants", index)
    yield from _outside(
        (*here, "default_mailbox"), "default_mailbox", tenant.default_mailbox, tenant, domains
    )
    for alias, primary in tenant.aliases.items():
        yield from _outside((*here, "aliases", alias), f"alias {alias!r} ->", primary, tenant, domains)
    for external, internal in tenant.address_map.items():
        yield from _outside(
            (*here, "address_map", external), f"address_map {external!r} ->", internal, tenant, domains
        )
    for r, rule in enumerate(tenant.rules.rules):
        for t, address in enumerate(rule.to):
            yield from _outside(
                (*here, "rules", "rules", r, "to", t), f"rule {rule.id!r} to", address, tenant, domains
            )
    for s, source in enumerate(tenant.sources):
        if source.deliver_to is not None:
            loc = (*here, "sources", s, "deliver_to")
            yield from _outside(loc, f"source {source.id!r} deliver_to", source.deliver_to, tenant, domains)


def _overlaps(config: MailferryConfig) -> Iterator[Problem]:
    owner: dict[str, tuple[str, int]] = {}
    for index, tenant in enumerate(config.tenants):
        for position, domain in enumerate(tenant.accepted_domains):
            loc: Path = ("tenants", index, "accepted_domains", position)
            canonical = ascii_domain(domain)
            if canonical is None:
                yield loc, f"{domain!r} is not a valid domain name"
                continue
            first = owner.setdefault(canonical, (tenant.id, index))
            if first[0] != tenant.id:
                yield loc, f"domain {domain!r} is already accepted by tenant {first[0]} (tenants[{first[1]}])"


def fence_problems(config: MailferryConfig) -> list[Problem]:
    """Every place where the configuration lets one tenant reach outside its domains."""
    problems = list(_overlaps(config))
    for index, tenant in enumerate(config.tenants):
        problems += _tenant_values(index, tenant)
    return problems
