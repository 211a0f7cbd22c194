"""What ``/healthz`` and ``/readyz`` answer: a heartbeat and a readiness flag per process.

A role's main loop beats on every turn (the fetch and stream loops at least every 5 s, the
delivery loop every poll); when no beat came for ``stuck_after`` seconds the loop is stuck
(a hung client call, a deadlock) and ``/healthz`` fails, so the orchestrator restarts the
process. Readiness is separate: a role is ready when it is connected to Kafka and its
partitions are assigned (or, for the audit index, its topic is), and not while a rebalance
has taken them away. Failing readiness takes a pod out of service without restarting it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


class Health:
    def __init__(self, stuck_after: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stuck_after = stuck_after
        self._clock = clock
        self._lock = threading.Lock()
        self._last_beat = self._now()
        self._ready = False
        self._why_not = "starting"

    def _now(self) -> float:
        return self._clock()

    def beat(self) -> None:
        with self._lock:
            self._last_beat = self._now()

    def ready(self, ready: bool = True, why_not: str = "") -> None:
        with self._lock:
            self._ready = ready
            self._why_not = why_not or ("" if ready else "not ready")

    def liveness(self) -> Verdict:
        with self._lock:
            silent = self._now() - self._last_beat
        if silent > self.stuck_after:
            return Verdict(False, f"main loop silent for {silent:.0f}s (limit {self.stuck_after:.0f}s)")
        return Verdict(True, "alive")

    def readiness(self) -> Verdict:
        with self._lock:
            ready, why_not = self._ready, self._why_not
        alive = self.liveness()
        if not alive.ok:
            return alive
        return Verdict(True, "ready") if ready else Verdict(False, why_not)


HEALTH = Health()
"""This process's one health state (a process runs one role)."""


def beat() -> None:
    HEALTH.beat()


def ready(is_ready: bool = True, why_not: str = "") -> None:
    HEALTH.ready(is_ready, why_not)
