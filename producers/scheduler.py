"""The asyncio scheduler of a fetch worker: one loop per mailbox, passes run in threads.

Guarantees: a mailbox never has two passes at once (one loop each, stopped only between
passes); a tenant never has more passes running than its ``fetch_concurrency``; connection
problems back off exponentially; an operator error (bad credentials, an unreadable secret or
CA file: ``mailferry.errors.OperatorError``) pauses that mailbox, reported once, and tries it
again every ``pause_retry`` seconds (rarely enough not to lock the account) or at once when its
config changes, the rule deliver applies to a tenant. Any other permanent error stops the mailbox
with a clear status instead of hammering the server. Everything else keeps polling.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailferry.config.sources import Source
from mailferry.errors import MailferryError, OperatorError, PermanentError, TransientError
from mailferry.producers.context import PassResult

log = logging.getLogger(__name__)

PassFn = Callable[[str, Source], PassResult]
"""Runs one pass of (tenant, source) synchronously; raises ``MailferryError``."""
ErrorFn = Callable[[str, str, MailferryError, bool], None]
"""Told (tenant, mailbox, error, stopped) when a mailbox starts failing or fails differently;
``stopped`` when it is paused or stopped rather than backing off."""
IdleFn = Callable[[str, Source, float, threading.Event], bool]
"""Waits (synchronously) up to the given seconds for the server to announce new mail."""


@dataclass(frozen=True)
class Backoff:
    base: float = 2.0
    factor: float = 2.0
    maximum: float = 600.0
    jitter: float = 0.1

    def delay(self, failures: int, hint: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1)."""
        raw = min(self.maximum, self.base * self.factor ** max(0, failures - 1))
        raw = max(raw, hint or 0.0)
        return raw * (1 + random.uniform(0, self.jitter))


def next_interval(interval: float, jitter_fraction: float = 0.1) -> float:
    """The poll interval with jitter so that many mailboxes do not poll in lock-step."""
    return interval * (1 + random.uniform(-jitter_fraction, jitter_fraction))


@dataclass
class MailboxStatus:
    tenant: str
    mailbox: str
    kind: str
    state: str = "starting"  # starting|waiting|push-wait|polling|backoff|paused|stopped|disabled
    passes: int = 0
    fetched: int = 0
    deleted: int = 0
    skipped: int = 0
    errors: int = 0
    failures: int = 0
    last_pass_at: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    reason_code: str | None = None
    next_pass_at: float | None = None
    notes: list[str] = field(default_factory=list)
    idle_broken: bool = False

    def snapshot(self) -> dict[str, Any]:
        """For ``mailferry status``: times as ISO strings, ``last_poll`` as that command expects."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in ("tenant", "mailbox"):
                continue
            if key.endswith("_at") and isinstance(value, float):
                value = datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
            out[key] = value
        out["last_poll"] = out.get("last_pass_at")
        return out


class MailboxLoop:
    """Polls one mailbox until told to stop; stop takes effect between passes."""

    def __init__(self, scheduler: Scheduler, tenant: str, source: Source, config_hash: str) -> None:
        self.scheduler = scheduler
        self.tenant = tenant
        self.source = source
        self.config_hash = config_hash
        self.status = MailboxStatus(tenant, source.id, source.kind)
        self._stop = asyncio.Event()
        self._stop_thread = threading.Event()
        self._wake = asyncio.Event()
        self._poll_requested = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"fetch {tenant}/{source.id}")

    async def stop(self) -> None:
        self._stop.set()
        self._stop_thread.set()
        self._wake.set()
        await asyncio.shield(self.task)

    def wake(self) -> None:
        self._wake.set()

    def poll_now(self) -> bool:
        """Start the next pass now (``mailferry fetch`` on SIGUSR1): a mailbox waiting for its
        poll timer starts at once, one in a pass runs another right after it, so mail that
        arrived after the pass listed the mailbox is not left for the timer. Mailboxes that
        back off, are paused or stopped, or wait in IMAP IDLE are left alone: the first two
        wait on purpose (a locked account, a busy server), the last is told by the server."""
        if self.status.state not in ("starting", "waiting", "polling"):
            return False
        self._poll_requested = True
        self._wake.set()
        return True

    async def _sleep(self, seconds: float) -> None:
        requested, self._poll_requested = self._poll_requested, False
        if requested and self.status.state in ("starting", "waiting"):
            return
        self.status.next_pass_at = time.time() + seconds
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass
        self._poll_requested = False

    async def _run(self) -> None:
        if not self.source.enabled:
            self.status.state = "disabled"
            return
        await self._sleep(random.uniform(0, min(1.0, self.source.poll_interval.total_seconds())))
        while not self._stop.is_set():
            delay = await self._one_pass()
            if delay is None or self._stop.is_set():
                return
            if self.status.state == "waiting" and getattr(self.source, "idle", False):
                await self._idle(delay)
            else:
                await self._sleep(delay)

    async def _idle(self, delay: float) -> None:
        """IMAP IDLE until new mail or ``delay``; a plain sleep when IDLE is not possible."""
        idle_fn = self.scheduler.idle_fn
        if idle_fn is None or self.status.idle_broken:
            await self._sleep(delay)
            return
        started = time.monotonic()
        self.status.next_pass_at = time.time() + delay
        self.status.state = "push-wait"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self.scheduler.idle_executor, idle_fn, self.tenant, self.source, delay, self._stop_thread
            )
        except Exception as exc:
            log.info("mailbox %s/%s: IDLE not used: %s", self.tenant, self.source.id, exc)
            self.status.idle_broken = getattr(exc, "reason_code", "") == "idle-unsupported"
            await self._sleep(max(0.0, delay - (time.monotonic() - started)))

    async def _one_pass(self) -> float | None:
        """Run a pass; the delay until the next one, or None when the mailbox must stop."""
        status = self.status
        async with self.scheduler.tenant_slot(self.tenant):
            if self._stop.is_set():
                return None
            status.state = "polling"
            status.last_pass_at = time.time()
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(
                    self.scheduler.executor, self.scheduler.pass_fn, self.tenant, self.source
                )
            except OperatorError as exc:
                if status.reason_code != exc.reason_code:  # reported once per pause, not per check
                    self._report(exc, stopped=True)
                    log.error("mailbox %s/%s paused: %s", self.tenant, self.source.id, exc)
                status.state, status.last_error, status.reason_code = "paused", str(exc), exc.reason_code
                status.errors += 1
                return self.scheduler.pause_retry
            except PermanentError as exc:
                self._report(exc, stopped=True)
                status.state, status.last_error, status.reason_code = "stopped", str(exc), exc.reason_code
                status.errors += 1
                log.error("mailbox %s/%s stopped: %s", self.tenant, self.source.id, exc)
                return None
            except Exception as exc:
                error = exc if isinstance(exc, MailferryError) else TransientError(repr(exc))
                if status.failures == 0 or status.reason_code != error.reason_code:
                    self._report(error, stopped=False)
                status.failures += 1
                status.errors += 1
                status.last_error, status.reason_code = str(error), error.reason_code
                status.state = "backoff"
                hint = error.retry_after if isinstance(error, TransientError) else None
                log.warning("mailbox %s/%s: %s", self.tenant, self.source.id, error)
                return self.scheduler.backoff.delay(status.failures, hint)
        status.passes += 1
        status.failures = 0
        status.last_ok_at = time.time()
        status.last_error = status.reason_code = None
        status.fetched += result.fetched
        status.deleted += result.deleted + result.moved
        status.skipped += result.skipped
        status.errors += result.errors
        status.notes = (status.notes + result.notes)[-5:]
        status.state = "waiting"
        return next_interval(self.source.poll_interval.total_seconds())

    def _report(self, error: MailferryError, *, stopped: bool) -> None:
        """Tell the worker once per new kind of failure, not on every retry."""
        report = self.scheduler.on_error
        if report is None:
            return
        try:
            report(self.tenant, self.source.id, error, stopped)
        except Exception:
            log.exception("reporting the failure of %s/%s failed", self.tenant, self.source.id)


class Scheduler:
    """The mailbox loops of one worker, keyed ``tenant/mailbox``."""

    def __init__(
        self,
        pass_fn: PassFn,
        tenant_limits: dict[str, int],
        *,
        threads: int = 64,
        backoff: Backoff | None = None,
        default_limit: int = 10,
        idle_fn: IdleFn | None = None,
        idle_threads: int = 512,
        on_error: ErrorFn | None = None,
        pause_retry: float = 600.0,
    ) -> None:
        self.on_error = on_error
        self.pause_retry = pause_retry
        self.pass_fn = pass_fn
        self.idle_fn = idle_fn
        self.idle_executor = ThreadPoolExecutor(max_workers=idle_threads, thread_name_prefix="idle")
        self.backoff = backoff or Backoff()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")
        self._limits = tenant_limits
        self._default_limit = default_limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.loops: dict[str, MailboxLoop] = {}

    def poll_now(self) -> int:
        """Every mailbox that may poll now does (``MailboxLoop.poll_now``); how many."""
        return sum(loop.poll_now() for loop in self.loops.values())

    def tenant_slot(self, tenant: str) -> asyncio.Semaphore:
        if tenant not in self._slots:
            self._slots[tenant] = asyncio.Semaphore(self._limits.get(tenant, self._default_limit))
        return self._slots[tenant]

    async def upsert(self, tenant: str, source: Source, config_hash: str) -> None:
        """Start polling a mailbox, or restart it (between passes) when its config changed."""
        key = f"{tenant}/{source.id}"
        current = self.loops.get(key)
        if current is not None:
            if current.config_hash == config_hash:
                return  # a stopped or paused mailbox starts again at once only with a changed config
            await current.stop()
        self.loops[key] = MailboxLoop(self, tenant, source, config_hash)

    async def remove(self, keys: list[str]) -> None:
        """Stop these mailboxes and wait for their running passes to end."""
        loops = [self.loops.pop(key) for key in keys if key in self.loops]
        await asyncio.gather(*(loop.stop() for loop in loops))

    async def stop_all(self) -> dict[str, Any]:
        """Stop every mailbox; returns their last status, taken after their passes ended, so
        the worker's final snapshot still says how each mailbox stood."""
        stopped = dict(self.loops)
        await self.remove(list(stopped))
        self.executor.shutdown(wait=True)
        self.idle_executor.shutdown(wait=True)
        return {key: loop.status.snapshot() for key, loop in sorted(stopped.items())}

    def snapshot(self) -> dict[str, Any]:
        return {key: loop.status.snapshot() for key, loop in sorted(self.loops.items())}
