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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import mailferry_config
from corpus import DOMAIN, build_message
from latency import wait_until
from mailferry_runner import not_runnable_reason
from procwatch import Watched, process_tree, read_process, reaped_children_cpu
from profiling import role_of
from source import Corpus

from mailferry_testkit.dovecot import DovecotServer


@dataclass(frozen=True)
class PassView:
    """One mailbox as one fetch snapshot shows it."""

    last_pass_at: float | None  # when the latest pass started (after its tenant slot was free)
    next_pass_at: float | None  # when the pass after it is due
    passes: int  # finished passes
    state: str


def _stamp(value: Any) -> float | None:
    """A snapshot time: epoch seconds, or an ISO string (the fetch role writes whole seconds,
    so lags computed from those are good to about a second)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def pass_views(snapshot: dict[str, Any]) -> dict[str, PassView]:
    """Mailbox key -> its pass times, from one snapshot of the fetch role."""
    mailboxes = snapshot.get("mailboxes")
    if not isinstance(mailboxes, dict):
        return {}
    return {
        key: PassView(
            _stamp(entry.get("last_pass_at")),
            _stamp(entry.get("next_pass_at")),
            int(entry.get("passes") or 0),
            str(entry.get("state") or ""),
        )
        for key, entry in mailboxes.items()
        if isinstance(entry, dict)
    }


def lags_between(earlier: dict[str, PassView], later: dict[str, PassView]) -> list[float]:
    """Lag of every pass that started between two snapshots: its start minus the due time the
    earlier snapshot announced. Only when the earlier snapshot caught the mailbox waiting (its
    due time after its last start) and exactly one pass started in between (one finished, or
    one running now), so the due time belongs to that pass."""
    lags = []
    for key, after in later.items():
        before = earlier.get(key)
        if before is None or before.last_pass_at is None or before.next_pass_at is None:
            continue
        if after.last_pass_at is None or after.last_pass_at <= before.last_pass_at:
            continue
        started = after.passes - before.passes + (1 if after.state == "polling" else 0)
        if started == 1 and before.state == "waiting" and before.next_pass_at > before.last_pass_at:
            lags.append(max(0.0, after.last_pass_at - before.next_pass_at))
    return lags


def _snapshots(state_dir: Path) -> list[dict[str, Any]]:
    docs = []
    for path in (state_dir / "status").glob("fetch*.json"):
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return docs


def _merged(state_dir: Path) -> dict[str, PassView]:
    views: dict[str, PassView] = {}
    for snapshot in _snapshots(state_dir):
        views.update(pass_views(snapshot))
    return views


def _passed(state_dir: Path) -> int:
    return sum(1 for view in _merged(state_dir).values() if view.passes > 0)


def _dovecot_cpu(server: DovecotServer) -> float:
    master = _dovecot_master(server)
    if master is None:
        return 0.0
    total = reaped_children_cpu(master)
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


def run(
    work: Path, *, mailboxes: int, interval: float, seconds: float, concurrency: int | None = None
) -> None:
    title = (
        f"scale scenario: {mailboxes} mailboxes, {interval:g} s poll, one fetch worker, tenant "
        f"fetch_concurrency {concurrency or 'default (10)'}"
    )
    reason = not_runnable_reason()
    if reason:
        print(f"{title}: {reason}")
        return
    users = [f"scale{i:05d}" for i in range(mailboxes)]
    shutil.rmtree(work / "dovecot-scale", ignore_errors=True)
    server = DovecotServer(work / "dovecot-scale").start()
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
        users=users,
        pop3_port=server.pop3_port,
        state_dir=state_dir,
        target=target,
        poll_seconds=interval,
        fetch_concurrency=concurrency,
    )
    config = mailferry_config.write(work / "mailferry-scale.toml", text)
    log = work / "mailferry-scale.log"
    watched = Watched(
        [sys.executable, "-m", "mailferry", "-c", str(config), "run", "--role", "fetch"], log=log
    ).start()
    try:
        polled_all = wait_until(lambda: _passed(state_dir) >= mailboxes, 300, poll=1.0)
        if not polled_all:
            print(
                f"{title}: only {_passed(state_dir)} of {mailboxes} mailboxes had a pass after 300 s; "
                f"see {log} and {state_dir / 'status'}"
            )
            return
        report(title, watched, server, state_dir, users, rng, interval, seconds)
    finally:
        watched.send()
        watched.wait(timeout=90)
        if server.log_file.exists():
            shutil.copy(server.log_file, work / "dovecot-scale.log")
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
        return sum(cpu for label, cpu in watched.cpu_now().values() if role_of(label) == "fetch")

    cpu0, dovecot0, began = fetch_cpu(), _dovecot_cpu(server), time.monotonic()
    previous = _merged(state_dir)
    lags: list[float] = []
    sent = 0
    while time.monotonic() - began < seconds:
        user = rng.choice(users)
        message = build_message(
            rng, bench_id=f"scale-drip-{sent}", to=f"{user}@{DOMAIN}", envelope=None, size=4_000
        )
        server.seed(user, [message])
        sent += 1
        current = _merged(state_dir)
        lags += lags_between(previous, current)
        previous = current
        time.sleep(1.0)
    elapsed = time.monotonic() - began
    cpu_share = (fetch_cpu() - cpu0) / elapsed
    dovecot_share = (_dovecot_cpu(server) - dovecot0) / elapsed
    lags.sort()
    print(title)
    print(f"  window {elapsed:.0f} s, {sent} new messages dripped in")
    print(f"  fetch worker CPU share: {cpu_share:.2f} of one core (Dovecot: {dovecot_share:.2f})")
    if len(lags) >= 2:
        cuts = statistics.quantiles(lags, n=100, method="inclusive")
        print(
            f"  poll lag over {len(lags)} passes (start minus due time, from the fetch snapshot, whose "
            "times are whole seconds): "
            f"p50 {cuts[49]:.2f} s, p99 {cuts[98]:.2f} s, max {lags[-1]:.2f} s"
        )
    else:
        print("  poll lag: fewer than two passes were caught between fetch snapshots")
