"""The latency scenario: messages dripped into the source at a steady rate while a client polls.

Latency is the time from a message becoming visible in the source Maildir (the moment its
file is renamed into ``new/``) to its delivery: its arrival at the SMTP sink, or its file
appearing in the destination Maildir. Every client polls every second, as the issue asks.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corpus import DOMAIN, ENVELOPE_HEADER, GLOBAL_MAILBOX, build_message
from sink import SmtpSink

from mailferry_testkit.dovecot import DovecotServer

_BENCH_ID = re.compile(rb"^X-Bench-Id:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


@dataclass
class LatencyResult:
    name: str
    sent: int
    arrived: int
    p50_s: float
    p99_s: float
    max_s: float
    note: str = ""


def warmup_message(user: str) -> bytes:
    """One tiny message per mailbox, delivered before any timing starts: proves the client
    runs and has made its first poll."""
    envelope = f"{ENVELOPE_HEADER}: user0000@{DOMAIN}\n" if user == GLOBAL_MAILBOX else ""
    to = "user0000" if user == GLOBAL_MAILBOX else user
    return (
        f"{envelope}From: bench <bench@partner.example>\nTo: {to}@{DOMAIN}\nSubject: warm-up\n"
        f"Message-ID: <warmup-{user}@partner.example>\nX-Bench-Id: warmup-{user}\n\nwarm-up\n"
    ).encode()


def summarise(name: str, sent: dict[str, float], arrived: dict[str, float], note: str = "") -> LatencyResult:
    latencies = sorted(arrived[key] - sent[key] for key in sent if key in arrived)
    if len(latencies) >= 2:
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = latencies[0] if latencies else float("nan")
    return LatencyResult(
        name, len(sent), len(latencies), p50, p99, latencies[-1] if latencies else float("nan"), note
    )


def drip(server: DovecotServer, users: list[str], rate: float, seconds: float, seed: int) -> dict[str, float]:
    """Seed ``rate`` small messages a second for ``seconds``, round-robin over the mailboxes;
    returns when each became visible (time.time()), by bench id."""
    rng = random.Random(seed)
    personal = [u for u in users if u != GLOBAL_MAILBOX] or ["postmaster"]
    visible: dict[str, float] = {}
    total = int(rate * seconds)
    began = time.monotonic()
    for index in range(total):
        user = users[index % len(users)]
        bench_id = f"drip{seed}-{index:06d}"
        owner = rng.choice(personal) if user == GLOBAL_MAILBOX else user
        data = build_message(
            rng,
            bench_id=bench_id,
            to=f"{owner}@{DOMAIN}",
            envelope=f"{owner}@{DOMAIN}" if user == GLOBAL_MAILBOX else None,
            size=rng.randint(2_000, 20_000),
        )
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        server.seed(user, [data])
        visible[bench_id] = time.time()
    return visible


def sink_arrivals(sink: SmtpSink) -> dict[str, float]:
    first: dict[str, float] = {}
    for arrival in sink.arrivals():
        first.setdefault(arrival.bench_id, arrival.at)
    return first


class MaildirWatcher:
    """Notes when each message file shows up in a Maildir; with ``nested``, in every Maildir one
    level below (one per recipient).

    The time is the file's ctime: when it was linked or renamed into ``new/`` (and made
    visible), which every Maildir writer does last. Its mtime, used before, is the end of the
    write in ``tmp/``, before the writer's fsync and link: a row ended up to one fsync of its
    last (often largest) file early."""

    def __init__(self, maildir: Path, interval: float = 0.05, nested: bool = False) -> None:
        self.maildir = maildir
        self.nested = nested
        self.interval = interval
        self.seen: dict[str, float] = {}
        self._names: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> MaildirWatcher:
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._scan()
        return dict(self.seen)

    def _folders(self) -> list[Path]:
        boxes = [p for p in self.maildir.iterdir() if p.is_dir()] if self.nested else [self.maildir]
        return [box / sub for box in boxes for sub in ("new", "cur") if (box / sub).is_dir()]

    def _scan(self) -> None:
        for folder in self._folders():
            for entry in folder.iterdir():
                if entry.name in self._names:
                    continue
                try:
                    with entry.open("rb") as handle:
                        head = handle.read(16384)
                    visible = entry.stat().st_ctime
                except FileNotFoundError:
                    continue
                self._names.add(entry.name)
                found = _BENCH_ID.search(head)
                if found:
                    self.seen.setdefault(found.group(1).decode("ascii", "replace"), visible)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._scan()
            self._stop.wait(self.interval)


def wait_until(check: Callable[[], bool], timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(poll)
    return check()
