"""When the chaos suite breaks things, and how much mail it offers meanwhile (pure logic).

A fault is tied to a share of the expected deliveries, spread between 5 % and 85 %, so it
fires while mail flows however fast the machine is. The corpus is not put into the source
all at once: the feeder keeps a bounded backlog ahead of the deliveries and holds back at the
next fault's share until that fault has fired. On a quiet machine the pipeline would
otherwise drain the whole corpus before the later faults are due (a run of issue 12 fired
6 of 13 faults after the last delivery).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ROLES = ("fetch", "stream", "deliver")
LOW, HIGH = 0.05, 0.85  # faults fire between these shares of the expected deliveries


@dataclass(frozen=True)
class Fault:
    at_share: float  # of the expected deliveries seen when it fires
    kind: str  # a role name (kill -9), "broker" (kill -9, restarted) or "rebalance"


@dataclass(frozen=True)
class Fired:
    """A fault as it happened: the traffic it met proves it hit mail in flight."""

    at: float  # seconds since the roles started
    kind: str
    victim: str
    delivered: int  # expected pairs present at their target
    offered: int  # pairs put into the source so far
    at_source: int  # messages still in the source mailboxes
    in_flight: int  # offered, not delivered yet
    past_source: int  # of those, fetched (in Kafka, the stream or a deliver worker)

    @property
    def mid_traffic(self) -> bool:
        return self.in_flight > 0

    def line(self) -> str:
        return (
            f"{self.at:6.1f}s {self.kind:<9} {self.victim:<34} delivered {self.delivered:>5}  "
            f"in flight {self.in_flight:>4} (past the source {self.past_source:>4})"
        )


def plan(kills: int, broker_kills: int, rebalances: int, rng: random.Random) -> list[Fault]:
    """Role kills take fetch, stream and deliver in turn; every kind lands at random shares."""
    count = kills + broker_kills + rebalances
    shares = sorted(rng.uniform(LOW, HIGH) for _ in range(count))
    kinds = [ROLES[i % len(ROLES)] for i in range(kills)] + ["broker"] * broker_kills
    kinds += ["rebalance"] * rebalances
    rng.shuffle(kinds)
    return [Fault(s, k) for s, k in zip(shares, kinds, strict=True)]


def offer_limit(
    total: int, delivered: int, next_share: float | None, window: int, trickle: int, blocked: bool
) -> int:
    """How many pairs may have been put into the source by now.

    ``window`` ahead of the deliveries, but no more than ``window`` past the share of the
    next fault (None: none left), so that fault still meets mail in flight. While that fault
    waits (``blocked``: for its spacing or for the broker) nothing more is offered, or a fast
    pipeline would drain the corpus meanwhile; once it may fire, ``trickle`` more than
    delivered at least, so it never finds the pipeline empty.
    """
    if next_share is None:
        return total
    held = min(delivered, int(next_share * total)) + window
    if blocked:
        return min(total, held)
    return min(total, max(held, delivered + trickle))


def blame(when: float, fired: list[Fired]) -> str:
    """The last fault fired at or before ``when`` (a hint for a duplicate, not a proof)."""
    before = [f.kind for f in fired if f.at <= when]
    return before[-1] if before else "none"
