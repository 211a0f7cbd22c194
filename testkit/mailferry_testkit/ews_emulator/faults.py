"""Faults the EWS EMULATOR (not Microsoft Exchange) answers on demand.

A test scripts the next N requests (optionally of one operation) to fail in one of the ways
a real Exchange server fails; the emulator consumes the script in arrival order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    SERVER_BUSY = "server-busy"  # SOAP fault ErrorServerBusy with BackOffMilliseconds
    HTTP_500 = "http-500"  # IIS "Server Error in '/EWS' Application", not XML
    HTTP_503 = "http-503"
    STORE_UNAVAILABLE = "store-unavailable"  # ErrorMailboxStoreUnavailable response message
    NO_SUCH_MAILBOX = "no-such-mailbox"  # SOAP fault ErrorNonExistentMailbox
    QUOTA_EXCEEDED = "quota-exceeded"  # ErrorQuotaExceeded response message
    SIZE_EXCEEDED = "size-exceeded"  # ErrorMessageSizeExceeded response message
    MIME_CONVERSION_FAILED = "mime-conversion-failed"
    UNAUTHORIZED = "unauthorized"  # HTTP 401
    IMPERSONATION_DENIED = "impersonation-denied"  # SOAP fault ErrorImpersonateUserDenied
    SLOW = "slow"  # wait ``delay`` seconds, then answer normally
    TIMEOUT_AFTER_STORE = "timeout-after-store"  # do the work, then wait ``delay`` before answering


@dataclass
class ScriptedFault:
    fault: Fault
    remaining: int
    operation: str | None
    delay: float
    back_off_ms: int


class FaultScript:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[ScriptedFault] = []

    def add(self, fault: ScriptedFault) -> None:
        with self._lock:
            self._queue.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def take(self, operation: str | None) -> ScriptedFault | None:
        """The first scripted fault that applies to this request, consuming one use of it."""
        with self._lock:
            for scripted in self._queue:
                if scripted.operation is None or scripted.operation == operation:
                    scripted.remaining -= 1
                    if scripted.remaining <= 0:
                        self._queue.remove(scripted)
                    return scripted
        return None
