"""The scale scenario: many mailboxes (default 1,000) at a 10 s poll on one ``mailferry fetch``.

``mailferry run --role fetch`` starts the embedded broker, syncs the mailboxes and runs one
fetch worker. Each mailbox holds one message at the start; while the window is measured, new
messages trickle in (one a second, random mailboxes) so polls are not all empty.

- CPU share: CPU seconds of the fetch worker over the window, divided by the window (1.0 is
  one core fully used). Dovecot's share is shown beside it: it is the other half of the cost.
- Poll lag: how late each poll starts against its schedule. It is read from the fetch
  worker's status snapshot (``<state_dir>/status/fetch-*.json``): for every mailbox, the gap
  between two successive poll times minus the poll interval.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import mailferry_config
from corpus import DOMAIN, build_message
from latency import wait_until
from mailferry_runner import not_runnable_reason
from procwatch import Watched, process_tree, read_process
from source import Corpus

from mailferry.testing.dovecot import DovecotServer

POLL_KEYS = ("last_poll_started", "last_poll_start", "last_poll_at", "last_poll", "polled_at")


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def poll_times(snapshot: dict[str, Any]) -> dict[str, float]:
    """Mailbox id -> time of its last poll, from one fetch snapshot (empty if it has none)."""
    mailboxes = snapshot.get("mailboxes")
    items = (
        mailboxes.items()
        if isinstance(mailboxes, dict)
        else (
            ((m.get("id") or m.get("mailbox"), m) for m in mailboxes) if isinstance(mailboxes, list) else ()
        )
    )
    found: dict[str, float] = {}
    for key, entry in items:
        if not isinstance(entry, dict) or key is None:
            continue
        for name in POLL_KEYS:
            stamp = _timestamp(entry.get(name))
            if stamp is not None:
                found[str(key)] = stamp
                break
    return found


def _snapshots(state_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for path in (state_dir / "status").glob("fetch*.json"):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return docs


def _dovecot_cpu(server: DovecotServer) -> float:
    master = _dovecot_master(server)
    if master is None:
        return 0.0
    total = 0.0
    for pid in process_tree(master):
        read = read_process(pid)
        if read:
            total += read[1]
    return total


def _dovecot_master(server: DovecotServer) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(server.conf_file).encode() in cmdline and b"dovecot" in cmdline:
                return int(entry.name)
    return None


def run(work: Path, *, mailboxes: int, interval: float, seconds: float) -> None:
    title = f"scale scenario: {mailboxes} mailboxes, {interval:g} s poll, one fetch worker"
    reason = not_runnable_reason()
    if reason:
        print(f"{title}: {reason}")
        return
    users = [f"scale{i:05d}" for i in range(mailboxes)]
    server = DovecotServer(work / "dovecot-scale")
    server.remove()
    server.start()
    rng = random.Random(7)
    for user in users:
        server.add_user(user, Corpus.password(user))
        server.seed(
            user,
            [build_message(rng, bench_id=f"scale-{user}", to=f"{user}@{DOMAIN}", envelope=None, size=4_000)],
        )
    state_dir = work / "state-scale"
    shutil.rmtree(state_dir, ignore_errors=True)
    target: dict[str, object] = {"name": "archive", "kind": "maildir", "path": str(work / "scale-maildir")}
    text = mailferry_config.render(
        users=users, pop3_port=server.pop3_port, state_dir=state_dir, target=target, poll_seconds=interval
    )
    config = mailferry_config.write(work / "mailferry-scale.toml", text)
    log = work / "mailferry-scale.log"
    watched = Watched(
        [sys.executable, "-m", "mailferry", "-c", str(config), "run", "--role", "fetch"], log=log
    ).start()
    try:
        polled_all = wait_until(
            lambda: sum(len(poll_times(s)) for s in _snapshots(state_dir)) >= mailboxes, 300, poll=1.0
        )
        if not polled_all:
            seen = sum(len(poll_times(s)) for s in _snapshots(state_dir))
            print(
                f"{title}: the fetch snapshot names a poll time for {seen} of {mailboxes} mailboxes after "
                f"300 s (keys looked for: {', '.join(POLL_KEYS)}); see {log} and {state_dir / 'status'}"
            )
            return
        report(title, watched, server, state_dir, users, rng, interval, seconds)
    finally:
        watched.send()
        watched.wait(timeout=90)
        server.remove()


def report(
    title: str,
    watched: Watched,
    server: DovecotServer,
    state_dir: Path,
    users: list[str],
    rng: random.Random,
    interval: float,
    seconds: float,
) -> None:
    def fetch_cpu() -> float:
        return sum(cpu for label, cpu in watched.cpu_now().values() if " fetch" in label)

    cpu0, dovecot0, began = fetch_cpu(), _dovecot_cpu(server), time.monotonic()
    history: dict[str, set[float]] = {}
    sent = 0
    while time.monotonic() - began < seconds:
        user = rng.choice(users)
        server.seed(
            user,
            [
                build_message(
                    rng, bench_id=f"scale-drip-{sent}", to=f"{user}@{DOMAIN}", envelope=None, size=4_000
                )
            ],
        )
        sent += 1
        for snapshot in _snapshots(state_dir):
            for mailbox, stamp in poll_times(snapshot).items():
                history.setdefault(mailbox, set()).add(stamp)
        time.sleep(1.0)
    elapsed = time.monotonic() - began
    cpu_share = (fetch_cpu() - cpu0) / elapsed
    dovecot_share = (_dovecot_cpu(server) - dovecot0) / elapsed
    lags = sorted(
        max(0.0, later - earlier - interval)
        for stamps in history.values()
        for earlier, later in zip(sorted(stamps), sorted(stamps)[1:], strict=False)
    )
    print(title)
    print(f"  window {elapsed:.0f} s, {sent} new messages dripped in")
    print(f"  fetch worker CPU share: {cpu_share:.2f} of one core (Dovecot: {dovecot_share:.2f})")
    if len(lags) >= 2:
        cuts = statistics.quantiles(lags, n=100, method="inclusive")
        print(
            f"  poll lag over {len(lags)} polls: p50 {cuts[49]:.2f} s, p99 {cuts[98]:.2f} s, "
            f"max {lags[-1]:.2f} s"
        )
    else:
        print("  poll lag: fewer than two successive polls per mailbox were seen in the fetch snapshot")
