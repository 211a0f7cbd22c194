"""The per-tenant cap on recipients per message. Pure, no I/O.

A message naming thousands of recipients (a forged envelope, a list gone wrong) would
otherwise become thousands of deliveries. The first ``cap`` recipients in resolution order
get it; the others are not dropped: the tenant's default mailbox gets one copy with a
``fan-out-cap`` reason, and each capped address is audited, so a person can forward it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mailferry.mail.addresses import normalise_address
from mailferry.streams.resolver import Reason, Recipient

FAN_OUT_CAP = "fan-out-cap"


@dataclass(frozen=True)
class Capped:
    recipients: tuple[Recipient, ...]
    over_cap: tuple[str, ...]  # addresses that get no copy of their own
    fallback: str  # where their copy goes


def cap_recipients(recipients: tuple[Recipient, ...], *, cap: int, default_mailbox: str) -> Capped:
    fallback = normalise_address(default_mailbox) or default_mailbox.lower()
    if len(recipients) <= cap:
        return Capped(recipients, (), fallback)
    kept = list(recipients[:cap])
    over = tuple(r.address for r in recipients[cap:] if r.address != fallback)
    reason = Reason(FAN_OUT_CAP, f"{len(recipients) - cap} recipients over the tenant's cap of {cap}")
    for index, recipient in enumerate(kept):
        if recipient.address == fallback:
            kept[index] = replace(recipient, reasons=[*recipient.reasons, reason])
            break
    else:
        kept.append(Recipient(fallback, [reason]))
    return Capped(tuple(kept), over, fallback)
