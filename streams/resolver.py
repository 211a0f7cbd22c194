"""Recipient resolution: which Exchange mailboxes get a message, and why. Pure, no I/O.

- personal source: its ``deliver_to``;
- global source: the transport's envelope recipients when the raw record has them, else
  the envelope headers in the source's order, each read at its trusted occurrence (the
  provider's final MTA prepends its header, so the topmost is normally the trustworthy one;
  a sender can forge lower ones), then To/Cc/Resent-* only if the source opts in to guessing;
- candidates outside the tenant's accepted domains are ignored; the others are mapped through
  the address map, plus-addressing, aliases and the directory;
- rules then deliver-to, copy-to, drop or add headers;
- nothing resolved: the tenant's default mailbox with the ``possible-lost-bcc`` flag;
- a mailbox outside the tenant's accepted domains (a directory answer, or a config that
  was never validated) goes to the tenant's default mailbox with reason ``outside-tenant``:
  the directory is the one input here that no config check can vet.

Every recipient carries the reasons that put it there, for the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailferry.config.models import Tenant
from mailferry.config.sources import DEFAULT_ENVELOPE_HEADERS, Source
from mailferry.directory import Directory
from mailferry.errors import OperatorError, PermanentError
from mailferry.fence import OUTSIDE_TENANT, inside, tenant_domains
from mailferry.mail.addresses import (
    addresses_in,
    ascii_domain,
    domain_of,
    normalise_address,
    received_for,
    strip_plus,
)
from mailferry.mail.headers import MessageHeaders
from mailferry.streams.rule_match import matching_rules

POSSIBLE_LOST_BCC = "possible-lost-bcc"
GUESS_HEADERS = ("To", "Cc", "Resent-To", "Resent-Cc")


@dataclass(frozen=True)
class Reason:
    kind: str  # personal | envelope | header-guess | rule | alias | address-map | directory | fallback
    # | outside-tenant
    detail: str


@dataclass
class Recipient:
    address: str
    reasons: list[Reason] = field(default_factory=list)
    target: str | None = None  # a rule's target; None: the record's override or the tenant default


@dataclass(frozen=True)
class Resolution:
    recipients: tuple[Recipient, ...]
    flags: tuple[str, ...] = ()
    add_headers: tuple[tuple[str, str], ...] = ()
    dropped_by: str | None = None  # id of the rule that dropped the message
    ignored: tuple[tuple[str, str], ...] = ()  # (candidate, why) for the audit trail


def _occurrence(values: list[str], trusted: str | int) -> tuple[int, str] | None:
    """(1-based position, value) of the trusted occurrence: first, last, N (1 = topmost) or -N."""
    if not values:
        return None
    if trusted == "first":
        return 1, values[0]
    if trusted == "last":
        return len(values), values[-1]
    index = int(trusted)
    position = index if index > 0 else len(values) + 1 + index
    if not 1 <= position <= len(values):
        return None
    return position, values[position - 1]


def envelope_candidates(
    headers: MessageHeaders, names: Sequence[str], trusted: str | int, relevant: Callable[[str], bool]
) -> list[tuple[str, Reason]]:
    """Addresses of the first envelope header (in ``names`` order) that names a relevant one
    (in an accepted domain, or mapped by the address map)."""
    for name in names:
        if name.lower() == "received":
            values = [v for v in (received_for(r) for r in headers.get_all("Received")) if v]
            chosen = _occurrence(values, trusted)
            found = [chosen[1]] if chosen else []
        else:
            chosen = _occurrence(headers.get_all(name), trusted)
            found = addresses_in(chosen[1]) if chosen else []
        accepted_found = [a for a in found if relevant(a)]
        if chosen and accepted_found:
            detail = f"{name} #{chosen[0]}"
            return [(a, Reason("envelope", detail)) for a in accepted_found]
    return []


def guessed_candidates(headers: MessageHeaders) -> list[tuple[str, Reason]]:
    found = []
    for name in GUESS_HEADERS:
        for position, value in enumerate(headers.get_all(name), start=1):
            found += [(a, Reason("header-guess", f"{name} #{position}")) for a in addresses_in(value)]
    return found


class _Mapper:
    """Maps one candidate to its mailbox through address map, plus rule, aliases and directory."""

    def __init__(self, tenant: Tenant, directory: Directory | None) -> None:
        self.tenant = tenant
        self.directory = directory
        self.accepted = frozenset(ascii_domain(d) or d for d in tenant.accepted_domains)
        self.address_map = {k.lower(): v.lower() for k, v in tenant.address_map.items()}
        self.aliases = {k.lower(): v.lower() for k, v in tenant.aliases.items()}

    def relevant(self, address: str) -> bool:
        return domain_of(address) in self.accepted or address in self.address_map

    def map(self, address: str, *, check_domain: bool) -> tuple[str | None, list[Reason], str]:
        """(mailbox or None, reasons added, why it was ignored when None)."""
        reasons: list[Reason] = []
        mapped = self.address_map.get(address)
        if mapped is not None:
            reasons.append(Reason("address-map", f"{address} -> {mapped}"))
            address = mapped
        if check_domain and domain_of(address) not in self.accepted:
            return None, reasons, "outside-accepted-domains"
        if self.tenant.plus_addressing == "strip":
            base, tag = strip_plus(address)
            if tag is not None:
                reasons.append(Reason("plus-address", f"{address} -> {base}"))
                address = base
        alias = self.aliases.get(address)
        if alias is not None:
            reasons.append(Reason("alias", f"{address} -> {alias}"))
            address = alias
        if self.directory is not None:
            try:
                primary = self.directory.lookup(address)
            except (PermanentError, OperatorError) as exc:  # the directory refused: keep the address
                reasons.append(Reason("directory", f"{address}: look-up failed ({exc.reason_code}), kept"))
                return address, reasons, ""
            if primary is None:
                return None, reasons, "not-in-directory"
            primary = primary.lower()
            if primary != address:
                reasons.append(Reason("directory", f"{address} -> {primary}"))
                address = primary
        return address, reasons, ""


class _Collector:
    def __init__(self) -> None:
        self.by_address: dict[str, Recipient] = {}
        self.ignored: list[tuple[str, str]] = []

    def add(self, address: str, reasons: list[Reason], target: str | None = None) -> None:
        existing = self.by_address.get(address)
        if existing is None:
            self.by_address[address] = Recipient(address, list(reasons), target)
            return
        existing.reasons += [r for r in reasons if r not in existing.reasons]
        if target is not None and existing.target is None:
            existing.target = target


def _fence(tenant: Tenant, found: _Collector) -> None:
    """Send every mailbox outside the tenant to its default mailbox instead."""
    domains = tenant_domains(tenant)
    outside = [address for address in found.by_address if not inside(address, domains)]
    if not outside:
        return
    fallback = normalise_address(tenant.default_mailbox) or tenant.default_mailbox.lower()
    for address in outside:
        recipient = found.by_address.pop(address)
        detail = f"{address} is outside tenant {tenant.id}: its default mailbox instead"
        found.add(fallback, [*recipient.reasons, Reason(OUTSIDE_TENANT, detail)])
        found.ignored.append((address, OUTSIDE_TENANT))


def resolve(
    *,
    tenant: Tenant,
    source: Source | None,
    headers: MessageHeaders,
    size: int,
    envelope_recipients: Sequence[str] = (),
    directory: Directory | None = None,
) -> Resolution:
    """Resolve the recipients of one message of ``tenant`` fetched from ``source``."""
    mapper = _Mapper(tenant, directory)
    found = _Collector()

    def take(candidates: list[tuple[str, Reason]], *, check_domain: bool, target: str | None = None) -> None:
        for candidate, reason in candidates:
            mailbox, extra, why = mapper.map(candidate, check_domain=check_domain)
            if mailbox is None:
                found.ignored.append((candidate, why))
            else:
                found.add(mailbox, [reason, *extra], target)

    transport = [a for a in (normalise_address(r) for r in envelope_recipients) if a]
    if source is not None and source.mode == "personal" and source.deliver_to:
        personal = normalise_address(source.deliver_to) or source.deliver_to.lower()
        take([(personal, Reason("personal", source.id))], check_domain=False)
    elif transport:
        take([(a, Reason("envelope", "transport")) for a in transport], check_domain=True)
    else:
        names = source.envelope_headers if source else list(DEFAULT_ENVELOPE_HEADERS)
        trusted = source.trusted_occurrence if source else "first"
        take(
            envelope_candidates(headers, names, trusted, mapper.relevant),
            check_domain=True,
        )
        if not found.by_address and source is not None and source.guess_from_headers:
            take(guessed_candidates(headers), check_domain=True)

    add_headers: list[tuple[str, str]] = []
    for rule in matching_rules(tenant.rules, headers, size, source.id if source else None):
        reason = Reason("rule", rule.id)
        if rule.action == "drop":
            return Resolution((), dropped_by=rule.id, ignored=tuple(found.ignored))
        if rule.action == "add-header" and rule.header_name and rule.header_value is not None:
            add_headers.append((rule.header_name, rule.header_value))
            continue
        if rule.action == "deliver-to":
            found.by_address.clear()
        targets = [(a, reason) for a in (normalise_address(t) or t.lower() for t in rule.to)]
        take(targets, check_domain=False, target=rule.target)

    _fence(tenant, found)
    flags: list[str] = []
    if not found.by_address:
        flags.append(POSSIBLE_LOST_BCC)
        fallback = normalise_address(tenant.default_mailbox) or tenant.default_mailbox.lower()
        found.add(fallback, [Reason("fallback", "nothing resolved: tenant default mailbox")])
    return Resolution(
        recipients=tuple(found.by_address.values()),
        flags=tuple(flags),
        add_headers=tuple(add_headers),
        ignored=tuple(found.ignored),
    )
