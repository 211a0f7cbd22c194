"""Named points where a test makes the deliver process die as ``kill -9`` would.

The reliability tests (docs/reliability.md) need a crash at an exact step, such as between
the target write and the ledger acknowledgement, which a kill from outside hits only by
luck. ``MAILFERRY_CRASH_POINT=<name>`` makes the process SIGKILL itself the first time it
reaches ``<name>``; unset (always, in production) it costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

ENV = "MAILFERRY_CRASH_POINT"
AFTER_WRITE_AHEAD = "after-write-ahead"  # the attempt is recorded; the target write not begun
AFTER_TARGET_WRITE = "after-target-write"  # the target has the message; the ledger does not
AFTER_RETRY_RECORD = "after-retry-record"  # the retry record is acknowledged; nothing else is


def reach(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
