"""Runner (d): mailferry end to end on the embedded Kafka, plus the latency and scale scenarios.

mailferry is a long-running service, so it is measured the way it runs: ``mailferry run`` is
started against a Dovecot whose mailboxes are still empty, and the benchmark waits until one
warm-up message per mailbox has been delivered (broker, topics, consumer groups, Faust and the
first poll are then behind it). Only then is the corpus made visible in the Maildirs (staged in
``tmp/`` beforehand, moved to ``new/`` in one go), and the clock runs from that moment to the
last delivery. CPU is the CPU of the whole process tree in that window: the roles and the
embedded broker, reported apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mailferry_config
from latency import LatencyResult, drip, sink_arrivals, summarise, wait_until, warmup_message
from procwatch import Watched
from results import Result
from sink import SmtpSink
from source import Corpus, warm

from mailferry.testing.dovecot import DovecotServer

READY_TIMEOUT = 180.0


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
class Running:
    server: DovecotServer
    watched: Watched
    state_dir: Path

    def stop(self) -> int:
        self.watched.send(signal.SIGTERM)
        measurement = self.watched.wait(timeout=90)
        self.server.remove()
        return measurement.exit_code


def start(
    corpus_users: list[str],
    work: Path,
    name: str,
    target: dict[str, object],
    sink: SmtpSink,
    poll_seconds: float = 1.0,
) -> Running:
    """Dovecot with empty mailboxes, mailferry running against it, warm-up delivered."""
    server = DovecotServer(work / f"dovecot-{name}")
    server.remove()
    server.start()
    for user in corpus_users:
        server.add_user(user, Corpus.password(user))
    state_dir = work / f"state-{name}"
    subprocess.run(["rm", "-rf", str(state_dir)], check=True)
    config = mailferry_config.write(
        work / f"mailferry-{name}.toml",
        mailferry_config.render(
            users=corpus_users,
            pop3_port=server.pop3_port,
            state_dir=state_dir,
            target=target,
            poll_seconds=poll_seconds,
        ),
    )
    sink.reset()
    for user in corpus_users:
        server.seed(user, [warmup_message(user)])
    watched = Watched(
        [sys.executable, "-m", "mailferry", "-c", str(config), "run"],
        log=work / f"mailferry-{name}.log",
        env={**os.environ},
    ).start()
    running = Running(server, watched, state_dir)
    if not sink.wait_for(len(corpus_users), READY_TIMEOUT) or not watched.running():
        running.stop()
        raise RuntimeError(
            f"mailferry did not deliver the warm-up mail within {READY_TIMEOUT:.0f} s; "
            f"see {work / f'mailferry-{name}.log'}"
        )
    sink.reset()
    return running


def stage(server: DovecotServer, corpus: Corpus) -> list[tuple[Path, Path]]:
    """Copy the corpus into each Maildir's tmp/ (invisible to POP3); returns the moves to make."""
    uid, gid = os.stat(server.root / "mail").st_uid, os.stat(server.root / "mail").st_gid
    moves = []
    for user in corpus.mailboxes:
        maildir = server.root / "mail" / user
        for path in sorted((corpus.folder / user).iterdir()):
            staged = maildir / "tmp" / f"{path.name}.bench"
            staged.write_bytes(path.read_bytes())
            os.chown(staged, uid, gid)
            moves.append((staged, maildir / "new" / staged.name))
    return moves


def _cpu_split(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> tuple[float, float]:
    """(Python roles, broker) CPU seconds between two snapshots."""
    roles = broker = 0.0
    for pid, (label, cpu) in after.items():
        delta = cpu - before.get(pid, (label, 0.0))[1]
        if "java" in label.split(" ")[0] or "kafka.Kafka" in label:
            broker += delta
        else:
            roles += delta
    return roles, broker


def throughput(corpus: Corpus, work: Path, sink: SmtpSink) -> list[Result]:
    reason = not_runnable_reason()
    if reason:
        return [
            Result(
                "d. mailferry → SMTP",
                corpus.messages,
                0,
                corpus.total_bytes,
                0,
                0,
                0,
                note=reason,
                runnable=False,
            )
        ]
    return [smtp_throughput(corpus, work, sink)]


def smtp_throughput(corpus: Corpus, work: Path, sink: SmtpSink) -> Result:
    name = "d. mailferry → SMTP"
    running = start(corpus.mailboxes, work, "smtp", mailferry_config.smtp_target(sink.port), sink)
    try:
        moves = stage(running.server, corpus)
        before = running.watched.cpu_now()
        began = time.time()
        for staged, visible in moves:
            staged.rename(visible)
        warm(running.server, corpus.mailboxes)
        done = _wait_distinct(sink, corpus.messages, timeout=1800)
        after = running.watched.cpu_now()
        arrivals = sink.arrivals()
        last = max((a.at for a in arrivals), default=began)
        delivered = len({a.bench_id for a in arrivals})
        roles_cpu, broker_cpu = _cpu_split(before, after)
        rss_roles = running.watched.samples
        peak_role = (
            max((s.peak_rss_kb for s in rss_roles.values() if "mailferry" in s.label), default=0) / 1024
        )
        peak_broker = (
            max((s.peak_rss_kb for s in rss_roles.values() if "kafka.Kafka" in s.label), default=0) / 1024
        )
        note = (
            f"CPU roles {roles_cpu:.1f} s + broker {broker_cpu:.1f} s; peak RSS largest role "
            f"{peak_role:.0f} MB, broker {peak_broker:.0f} MB"
        )
        if not done:
            note = "timed out; " + note
    finally:
        code = running.stop()
    if code != 0:
        note += f"; mailferry run exit {code}"
    return Result(
        name,
        corpus.messages,
        delivered,
        corpus.total_bytes,
        last - began,
        roles_cpu + broker_cpu,
        peak_role,
        note=note,
    )


def _wait_distinct(sink: SmtpSink, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len({a.bench_id for a in sink.arrivals()}) >= count:
            return True
        time.sleep(0.1)
    return False


def latency(corpus: Corpus, work: Path, sink: SmtpSink, rate: float, seconds: float) -> LatencyResult:
    name = "d. mailferry → SMTP"
    reason = not_runnable_reason()
    if reason:
        return summarise(name, {}, {}, note=reason)
    running = start(corpus.mailboxes, work, "latency", mailferry_config.smtp_target(sink.port), sink)
    try:
        sent = drip(running.server, corpus.mailboxes, rate, seconds, seed=corpus.spec.seed)
        wait_until(lambda: all(key in sink_arrivals(sink) for key in sent), 60, poll=0.5)
        return summarise(name, sent, sink_arrivals(sink))
    finally:
        running.stop()


def scale(work: Path) -> None:
    reason = not_runnable_reason()
    print(f"scale scenario: {reason or 'not implemented yet'}")
