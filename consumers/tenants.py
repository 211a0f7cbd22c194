"""Paused tenants: who, why, since when, when to check again, and the records kept for them.

A tenant-wide error (bad credentials, impersonation denied) would fail every message of
the tenant the same way; dead-lettering them would flood the DLT and retrying each one
would hammer the server. Instead the tenant's records are parked here, uncommitted, and
its credentials are checked again periodically. When too many records are parked the
partitions they come from are held (paused) so memory stays bounded; that delays other
tenants sharing those partitions, which is the price of not dropping anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import TopicPartition

from mailferry.consumers.outcomes import Job
from mailferry.errors import MailferryError


@dataclass
class TenantPause:
    reason_code: str
    message: str
    since: datetime
    next_check: datetime
    targets: set[str] = field(default_factory=set)
    checks: int = 0
    parked: list[tuple[Job, str]] = field(default_factory=list)


class TenantPauses:
    def __init__(self, check_every: timedelta, max_parked: int = 5000) -> None:
        self.check_every = check_every
        self.max_parked = max_parked
        self._paused: dict[str, TenantPause] = {}

    def is_paused(self, tenant: str) -> bool:
        return tenant in self._paused

    def paused(self) -> list[str]:
        return sorted(self._paused)

    def pause(self, tenant: str, target: str, error: MailferryError) -> bool:
        """Record the pause; True when the tenant was not paused before."""
        now = datetime.now(UTC)
        state = self._paused.get(tenant)
        if state is not None:
            state.targets.add(target)
            return False
        self._paused[tenant] = TenantPause(
            reason_code=error.reason_code,
            message=str(error),
            since=now,
            next_check=now + self.check_every,
            targets={target},
        )
        return True

    def park(self, tenant: str, job: Job, target: str) -> None:
        self._paused[tenant].parked.append((job, target))

    def due_checks(self) -> list[tuple[str, list[str]]]:
        now = datetime.now(UTC)
        return [(t, sorted(s.targets)) for t, s in self._paused.items() if s.next_check <= now]

    def checked(self, tenant: str, error: MailferryError) -> None:
        """A credentials check failed again: keep paused, try later."""
        state = self._paused[tenant]
        state.checks += 1
        state.message = str(error)
        state.reason_code = error.reason_code
        state.next_check = datetime.now(UTC) + self.check_every

    def resume(self, tenant: str) -> list[tuple[Job, str]]:
        state = self._paused.pop(tenant)
        return state.parked

    def held_partitions(self) -> set[TopicPartition]:
        """Partitions to stop reading while a paused tenant has too many records parked."""
        held: set[TopicPartition] = set()
        for state in self._paused.values():
            if len(state.parked) >= self.max_parked:
                held |= {TopicPartition(job.topic, job.partition) for job, _ in state.parked}
        return held

    def parked_in(self, topic: str, partition: int) -> int:
        return sum(
            1
            for state in self._paused.values()
            for job, _ in state.parked
            if job.topic == topic and job.partition == partition
        )

    def drop_partitions(self, keys: list[tuple[str, int]]) -> None:
        """A rebalance took these partitions away; their parked records go to the new owner."""
        wanted = set(keys)
        for state in self._paused.values():
            state.parked = [(j, t) for j, t in state.parked if (j.topic, j.partition) not in wanted]

    def snapshot(self) -> dict[str, Any]:
        return {
            tenant: {
                "reason": state.reason_code,
                "error": state.message,
                "since": state.since.isoformat(),
                "next_check": state.next_check.isoformat(),
                "targets": sorted(state.targets),
                "checks": state.checks,
                "parked": len(state.parked),
            }
            for tenant, state in self._paused.items()
        }
