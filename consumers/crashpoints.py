"""Named points where a test makes the deliver process die as ``kill -9`` would.

The reliability tests (docs/reliability.md) need a crash at an exact step, such as between
the target write and the ledger acknowledgement, which a kill from outside hits only by
luck. ``MAILFERRY_CRASH_POINT=<name>`` makes the process SIGKILL itself the first time it
reaches ``<name>``, ``<name>#<n>`` the n-th time; unset (always, in production) it costs
one dictionary look-up.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "MAILFERRY_CRASH_POINT"
AFTER_WRITE_AHEAD = "after-write-ahead"  # the attempt is recorded; the target write not begun
AFTER_TARGET_WRITE = "after-target-write"  # the target has the message; the ledger does not
AFTER_RETRY_RECORD = "after-retry-record"  # the retry record is acknowledged; nothing else is
AFTER_SETTLED = "after-settled"  # one delivery's outcome is acknowledged; its offset not committed

_reached: Counter[str] = Counter()


def reach(name: str) -> None:
    wanted = os.environ.get(ENV)
    if wanted is None:
        return
    point, _, nth = wanted.partition("#")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
