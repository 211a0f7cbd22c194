"""Mail addresses as routing compares them: one canonical form per mailbox.

Exchange treats addresses case-insensitively, so the canonical form is lower case, and
internationalised domains are compared in their ASCII (IDNA 2008 / UTS #46) form so that
``müller.example`` in a header and ``xn--mller-kva.example`` in the config are one domain.
Parsing address lists is left to ``email.utils.getaddresses``.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

import idna

_LOCAL_OK = re.compile(r"^[^\s<>()\[\],;:\\\"@]+$")
_RECEIVED_FOR = re.compile(r"\bfor\s+<?\s*([^\s<>;]+@[^\s<>;]+?)\s*>?\s*(?:;|$|\s)", re.IGNORECASE)
MAX_ADDRESS = 320


def ascii_domain(domain: str) -> str | None:
    """The lower-case ASCII form of ``domain``, or None when it is not a valid host name."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > 253:
        return None
    if domain.isascii():
        labels = domain.split(".")
        if all(label and len(label) <= 63 and re.fullmatch(r"[a-z0-9_-]+", label) for label in labels):
            return domain
        return None
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return None


def normalise_address(address: str) -> str | None:
    """``local@domain`` in canonical form, or None for anything that is not one address."""
    candidate = address.strip().strip("<>").strip()
    if not candidate or len(candidate) > MAX_ADDRESS or candidate.count("@") != 1:
        return None
    local, domain = candidate.split("@")
    if not local or not _LOCAL_OK.match(local):
        return None
    canonical_domain = ascii_domain(domain)
    if canonical_domain is None:
        return None
    return f"{local.lower()}@{canonical_domain}"


def addresses_in(value: str) -> list[str]:
    """Every valid address in an address-list header value (To, Cc, Delivered-To ...)."""
    found = []
    for _name, address in getaddresses([value]):
        canonical = normalise_address(address)
        if canonical is not None:
            found.append(canonical)
    return found


def received_for(value: str) -> str | None:
    """The recipient of a ``Received: ... for <addr>;`` clause, if the header has one."""
    match = _RECEIVED_FOR.search(value)
    return normalise_address(match.group(1)) if match else None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def strip_plus(address: str, separator: str = "+") -> tuple[str, str | None]:
    """(address without the ``+tag``, the tag) for plus-addressing."""
    local, _, domain = address.rpartition("@")
    base, sep, tag = local.partition(separator)
    if not sep or not base:
        return address, None
    return f"{base}@{domain}", tag
