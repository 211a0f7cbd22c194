"""Runner (d): mailferry end to end on the embedded Kafka, throughput and latency.

mailferry is a long-running service, so it is measured the way it runs: ``mailferry run`` is
started against a Dovecot whose mailboxes are still empty, and the benchmark waits until one
warm-up message per mailbox has been delivered (broker, topics, consumer groups, Faust and the
first poll are then behind it). Only then is the corpus made visible in the Maildirs (staged in
``tmp/`` beforehand, moved to ``new/`` in one go), and the clock runs from that moment to the
last delivery. CPU is that of the whole process tree in that window: the roles and the
embedded broker, reported apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mailferry_config
from latency import LatencyResult, MaildirWatcher, drip, sink_arrivals, summarise, wait_until, warmup_message
from procwatch import Watched
from results import Result
from sink import SmtpSink
from source import Corpus, warm

from mailferry.testing.dovecot import DovecotServer

READY_TIMEOUT = 120.0
START_ATTEMPTS = 2  # a second start when the first never delivers the warm-up (said in the row's note)
Arrivals = Callable[[], dict[str, float]]


def not_runnable_reason() -> str | None:
    """Why mailferry cannot run end to end in this build, or None when it can."""
    missing = [
        role
        for role in ("fetch", "stream", "deliver")
        if subprocess.run([sys.executable, "-m", "mailferry", role, "--help"], capture_output=True).returncode
    ]
    if missing:
        return f"not runnable: the role(s) {', '.join(missing)} are not in this build of mailferry"
    return None


@dataclass
class Target:
    """Where a mailferry run delivers and how the benchmark sees what arrived."""

    label: str
    config: dict[str, object]
    arrivals: Arrivals
    close: Callable[[], None] = lambda: None


def smtp(sink: SmtpSink) -> Target:
    sink.reset()
    return Target("SMTP sink", mailferry_config.smtp_target(sink.port), lambda: sink_arrivals(sink))


def maildir(work: Path) -> Target:
    root = work / "mailferry-maildir"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    watcher = MaildirWatcher(root, nested=True).start()
    config: dict[str, object] = {"name": "archive", "kind": "maildir", "path": str(root)}
    return Target("Maildir", config, lambda: dict(watcher.seen), close=lambda: _stop(watcher))


def _stop(watcher: MaildirWatcher) -> None:
    watcher.stop()


@dataclass
class Running:
    server: DovecotServer
    watched: Watched
    log: Path
    notes: list[str]

    def stop(self) -> int:
        self.watched.send(signal.SIGTERM)
        measurement = self.watched.wait(timeout=90)
        self.server.remove()
        return measurement.exit_code


def start(users: list[str], work: Path, name: str, target: Target, poll_seconds: float = 1.0) -> Running:
    """Dovecot with one warm-up message per mailbox, mailferry running, warm-up delivered."""
    shutil.rmtree(work / f"dovecot-{name}", ignore_errors=True)
    server = DovecotServer(work / f"dovecot-{name}").start()
    for user in users:
        server.add_user(user, Corpus.password(user))
        server.seed(user, [warmup_message(user)])
    notes: list[str] = []
    for attempt in range(1, START_ATTEMPTS + 1):
        watched, log = _launch(users, work, name, target, server, poll_seconds)
        ready = wait_until(
            lambda w=watched: all(f"warmup-{u}" in target.arrivals() for u in users) or not w.running(),
            READY_TIMEOUT,
        )
        if ready and watched.running():
            return Running(server, watched, log, notes)
        watched.send(signal.SIGTERM)
        watched.wait(timeout=90)
        kept = work / f"state-{name}-failed{attempt}"
        shutil.rmtree(kept, ignore_errors=True)
        (work / f"state-{name}").rename(kept)
        notes.append(f"start {attempt}: warm-up not delivered in {READY_TIMEOUT:.0f} s (logs in {kept})")
    server.remove()
    raise RuntimeError("; ".join(notes))


def _launch(
    users: list[str], work: Path, name: str, target: Target, server: DovecotServer, poll_seconds: float
) -> tuple[Watched, Path]:
    """A fresh state folder (so a fresh embedded broker) and ``mailferry run`` on it."""
    state_dir = work / f"state-{name}"
    shutil.rmtree(state_dir, ignore_errors=True)
    text = mailferry_config.render(
        users=users,
        pop3_port=server.pop3_port,
        state_dir=state_dir,
        target=target.config,
        poll_seconds=poll_seconds,
    )
    config = mailferry_config.write(work / f"mailferry-{name}.toml", text)
    log = work / f"mailferry-{name}.log"
    argv = [sys.executable, "-m", "mailferry", "-c", str(config), "run"]
    return Watched(argv, log=log, env={**os.environ}).start(), log


def stage(server: DovecotServer, corpus: Corpus) -> list[tuple[Path, Path]]:
    """Copy the corpus into each Maildir's tmp/ (invisible to POP3); returns the moves to make."""
    owner = os.stat(server.runtime / "mail")
    moves = []
    for user in corpus.mailboxes:
        box = server.runtime / "mail" / user
        for path in sorted((corpus.folder / user).iterdir()):
            staged = box / "tmp" / f"{path.name}.bench"
            staged.write_bytes(path.read_bytes())
            os.chown(staged, owner.st_uid, owner.st_gid)
            moves.append((staged, box / "new" / staged.name))
    return moves


def _is_broker(label: str) -> bool:
    return "kafka.Kafka" in label


def _cpu_window(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> tuple[float, float]:
    """(Python roles, broker) CPU seconds between two snapshots of the process tree."""
    roles = broker = 0.0
    for pid, (label, cpu) in after.items():
        delta = cpu - before.get(pid, (label, 0.0))[1]
        if _is_broker(label):
            broker += delta
        else:
            roles += delta
    return roles, broker


def measure(corpus: Corpus, work: Path, target: Target) -> Result:
    name = f"d. mailferry → {target.label}"
    key = target.label.split()[0].lower()
    try:
        running = start(corpus.mailboxes, work, key, target)
    except RuntimeError as exc:
        target.close()
        return Result(name, corpus.messages, 0, corpus.total_bytes, 0, 0, 0, note=str(exc), runnable=False)
    wanted = set(corpus.recipients)
    try:
        moves = stage(running.server, corpus)
        before = running.watched.cpu_now()
        began = time.time()
        for staged, visible in moves:
            staged.rename(visible)
        warm(running.server, corpus.mailboxes)
        done = wait_until(lambda: wanted <= target.arrivals().keys(), 1800, poll=0.2)
        after = running.watched.cpu_now()
        arrived = {k: v for k, v in target.arrivals().items() if k in wanted}
        roles_cpu, broker_cpu = _cpu_window(before, after)
        samples = running.watched.samples.values()
        peak_role = max((s.peak_rss_kb for s in samples if not _is_broker(s.label)), default=0) / 1024
        peak_broker = max((s.peak_rss_kb for s in samples if _is_broker(s.label)), default=0) / 1024
    finally:
        code = running.stop()
        target.close()
    note = (
        f"CPU roles {roles_cpu:.1f} s + broker {broker_cpu:.1f} s; peak RSS largest role {peak_role:.0f} MB, "
        f"broker {peak_broker:.0f} MB"
    )
    if not done:
        note = f"timed out, see {running.log}; {note}"
    if code != 0:
        note += f"; mailferry run exit {code}"
    if running.notes:
        note += "; " + "; ".join(running.notes)
    wall = max(arrived.values(), default=began) - began
    return Result(
        name,
        corpus.messages,
        len(arrived),
        corpus.total_bytes,
        wall,
        roles_cpu + broker_cpu,
        peak_role,
        note=note,
    )


def throughput(corpus: Corpus, work: Path, sink: SmtpSink) -> list[Result]:
    reason = not_runnable_reason()
    if reason:
        return [
            Result(
                "d. mailferry", corpus.messages, 0, corpus.total_bytes, 0, 0, 0, note=reason, runnable=False
            )
        ]
    return [measure(corpus, work, smtp(sink)), measure(corpus, work, maildir(work))]


def latency(corpus: Corpus, work: Path, sink: SmtpSink, rate: float, seconds: float) -> LatencyResult:
    name = "d. mailferry → SMTP sink"
    reason = not_runnable_reason()
    if reason:
        return summarise(name, {}, {}, note=reason)
    target = smtp(sink)
    try:
        running = start(corpus.mailboxes, work, "latency", target)
    except RuntimeError as exc:
        return summarise(name, {}, {}, note=str(exc))
    try:
        sent = drip(running.server, corpus.mailboxes, rate, seconds, seed=corpus.spec.seed)
        wait_until(lambda: sent.keys() <= target.arrivals().keys(), 60, poll=0.5)
        return summarise(name, sent, target.arrivals())
    finally:
        running.stop()
