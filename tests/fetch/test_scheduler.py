"""The scheduler's guarantees, with passes that only sleep (the passes themselves are tested
against Dovecot elsewhere): tenant cap, no overlapping passes, back-off, stop on bad credentials."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable

from mailferry.config.sources import Pop3Source, Source
from mailferry.errors import CredentialsError, MailferryError, TransientError
from mailferry.producers.context import PassResult
from mailferry.producers.scheduler import Backoff, Scheduler


def _source(mailbox: str, interval: str = "50ms") -> Pop3Source:
    return Pop3Source.model_validate(
        {
            "id": mailbox,
            "kind": "pop3",
            "mode": "personal",
            "host": "127.0.0.1",
            "username": "u",
            "auth": {"kind": "password", "password": "env:UNUSED"},
            "deliver_to": "a@b.example",
            "poll_interval": interval,
        }
    )


class Recorder:
    def __init__(self, duration: float = 0.1) -> None:
        self.duration = duration
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.per_mailbox: Counter[str] = Counter()
        self.max_tenant: Counter[str] = Counter()
        self.max_mailbox = 0
        self.calls: Counter[str] = Counter()

    def __call__(self, tenant: str, source: Source) -> PassResult:
        with self.lock:
            self.running[tenant] += 1
            self.per_mailbox[source.id] += 1
            self.calls[source.id] += 1
            self.max_tenant[tenant] = max(self.max_tenant[tenant], self.running[tenant])
            self.max_mailbox = max(self.max_mailbox, self.per_mailbox[source.id])
        time.sleep(self.duration)
        with self.lock:
            self.running[tenant] -= 1
            self.per_mailbox[source.id] -= 1
        return PassResult(fetched=1)


async def test_tenant_cap_and_one_pass_per_mailbox_at_a_time() -> None:
    recorder = Recorder()
    scheduler = Scheduler(recorder, {"small": 2, "big": 5})
    for i in range(6):
        await scheduler.upsert("small", _source(f"s{i}"), "v1")
        await scheduler.upsert("big", _source(f"b{i}"), "v1")
    await asyncio.sleep(1.5)
    await scheduler.stop_all()
    assert recorder.max_tenant["small"] == 2
    assert recorder.max_tenant["big"] == 5
    assert recorder.max_mailbox == 1
    assert all(recorder.calls[f"s{i}"] >= 2 for i in range(6))
    assert sum(recorder.running.values()) == 0  # stop waited for the running passes


async def test_backoff_on_transient_errors_and_pause_on_bad_credentials() -> None:
    calls: Counter[str] = Counter()

    def flaky(tenant: str, source: Source) -> PassResult:
        calls[source.id] += 1
        if source.id == "down":
            raise TransientError("cannot connect", reason_code="unreachable")
        if source.id == "locked":
            raise CredentialsError("login refused")
        return PassResult(fetched=1)

    reports: list[tuple[str, str, bool]] = []

    def report(tenant: str, mailbox: str, error: MailferryError, stopped: bool) -> None:
        reports.append((mailbox, error.reason_code, stopped))

    backoff = Backoff(base=0.2, factor=2, maximum=10, jitter=0)
    scheduler = Scheduler(flaky, {}, backoff=backoff, pause_retry=0.5, on_error=report)
    for name in ("down", "locked", "fine"):
        await scheduler.upsert("t", _source(name, interval="20ms"), "v1")
    await asyncio.sleep(1.6)
    snapshot = scheduler.snapshot()
    await scheduler.stop_all()
    # 0.2 + 0.4 + 0.8 s of back-off: at most four attempts in 1.6 s, where polling would make ~50
    assert 2 <= calls["down"] <= 4
    assert snapshot["t/down"]["state"] == "backoff" and snapshot["t/down"]["reason_code"] == "unreachable"
    # paused, tried again every pause_retry (0.5 s), not every poll interval (20 ms), reported once
    assert 2 <= calls["locked"] <= 4
    assert snapshot["t/locked"]["state"] == "paused"
    assert snapshot["t/locked"]["reason_code"] == "bad-credentials"
    assert [r for r in reports if r[0] == "locked"] == [("locked", "bad-credentials", True)]
    assert calls["fine"] > 20 and snapshot["t/fine"]["fetched"] == calls["fine"]


async def test_a_changed_config_restarts_a_paused_mailbox_and_removal_stops_it() -> None:
    calls: Counter[str] = Counter()

    def refuse_v1(tenant: str, source: Source) -> PassResult:
        calls[source.host] += 1
        if source.host == "127.0.0.1":
            raise CredentialsError("login refused")
        return PassResult()

    scheduler = Scheduler(refuse_v1, {})
    await scheduler.upsert("t", _source("m"), "v1")
    await asyncio.sleep(0.3)
    await scheduler.upsert("t", _source("m"), "v1")  # same config: stays paused
    await asyncio.sleep(0.3)
    assert calls["127.0.0.1"] == 1
    await scheduler.upsert("t", _source("m").model_copy(update={"host": "localhost"}), "v2")
    await asyncio.sleep(0.3)
    assert calls["localhost"] >= 2
    await scheduler.remove(["t/m"])
    seen = calls["localhost"]
    await asyncio.sleep(0.3)
    assert calls["localhost"] == seen and "t/m" not in scheduler.snapshot()
    await scheduler.stop_all()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_poll_now_starts_a_waiting_mailbox_at_once_and_follows_a_running_pass() -> None:
    recorder = Recorder(duration=0.3)
    scheduler = Scheduler(recorder, {})
    await scheduler.upsert("t", _source("slow-timer", "1h"), "v1")
    loop = scheduler.loops["t/slow-timer"]
    await _until(lambda: recorder.calls["slow-timer"] == 1 and loop.status.state == "waiting")
    asked = time.monotonic()
    assert scheduler.poll_now() == 1
    await _until(lambda: recorder.calls["slow-timer"] == 2)
    assert time.monotonic() - asked < 0.2, "the pass started now, not at the one-hour timer"
    await _until(lambda: loop.status.state == "polling")
    scheduler.poll_now()  # mail that came after this pass listed the mailbox: one more pass
    await _until(lambda: recorder.calls["slow-timer"] == 3)
    await asyncio.sleep(0.5)
    await scheduler.stop_all()
    assert recorder.calls["slow-timer"] == 3, "one request, one extra pass; then the timer again"
    assert recorder.max_mailbox == 1


async def test_poll_now_leaves_paused_and_backing_off_mailboxes_alone() -> None:
    calls: Counter[str] = Counter()

    def failing(tenant: str, source: Source) -> PassResult:
        calls[source.id] += 1
        if source.id == "locked":
            raise CredentialsError("login refused")
        raise TransientError("cannot connect", reason_code="unreachable")

    scheduler = Scheduler(failing, {}, backoff=Backoff(base=30, jitter=0))
    for mailbox in ("locked", "down"):
        await scheduler.upsert("t", _source(mailbox), "v1")
    await _until(lambda: calls["locked"] == 1 and calls["down"] == 1)
    await asyncio.sleep(0.1)
    assert scheduler.poll_now() == 0
    await asyncio.sleep(0.3)
    await scheduler.stop_all()
    assert calls == {"locked": 1, "down": 1}, "a poll request must not hammer a locked or failing account"
