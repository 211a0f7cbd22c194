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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import kafka_usage
import mailferry_config
import profiling
import timeline
from corpus import DOMAIN
from latency import LatencyResult, MaildirWatcher, drip, sink_arrivals, summarise, wait_until, warmup_message
from procwatch import ProcSample, Watched
from profiling import role_of
from results import Result
from sink import SmtpSink
from source import Corpus, personal, warm

from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.ews_emulator.server import EwsEmulator

READY_TIMEOUT = 120.0
EWS_MAX_MESSAGE = (
    200 * 1024 * 1024
)  # Exchange Online allows up to 150 MB; the corpus may hold a --huge-mb one
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


EWS_USER, EWS_PASSWORD = "svc-mailferry", "bench-emulator"


def ews(corpus: Corpus) -> Target:
    """The project's EWS EMULATOR (not Microsoft Exchange) in this process, one mailbox per
    corpus owner. What arrived is read from its store every 50 ms, by Internet Message-ID."""
    emulator = EwsEmulator(max_message_size=EWS_MAX_MESSAGE).start()
    emulator.store.keep_bodies = False  # the benchmark needs the Message-IDs, not 160 MB of MIME
    emulator.add_account(EWS_USER, EWS_PASSWORD)
    addresses = [f"postmaster@{DOMAIN}", *(f"{u}@{DOMAIN}" for u in personal(corpus))]
    for address in addresses:
        emulator.add_mailbox(address)
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            for address in addresses:
                for item in emulator.items(address):
                    bench_id = (item.internet_message_id or "").strip("<>").split("@", 1)[0]
                    seen.setdefault(bench_id, time.time())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        emulator.stop()

    config: dict[str, object] = {
        "name": "exchange",
        "kind": "ews",
        "endpoint": emulator.url,
        "version": "Exchange2016",
        "auth": "basic",
        "username": EWS_USER,
        "password": EWS_PASSWORD,
        "impersonation": True,
    }
    return Target("EWS emulator", config, lambda: dict(seen), close=close)


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


def start(
    users: list[str],
    work: Path,
    name: str,
    target: Target,
    poll_seconds: float = 1.0,
    code: Path | None = None,
) -> Running:
    """Dovecot with one warm-up message per mailbox, mailferry running, warm-up delivered;
    ``code``: another revision's packages (``benchmarks/revisions.py``) instead of this tree's."""
    shutil.rmtree(work / f"dovecot-{name}", ignore_errors=True)
    server = DovecotServer(work / f"dovecot-{name}").start()
    for user in users:
        server.add_user(user, Corpus.password(user))
        server.seed(user, [warmup_message(user)])
    notes: list[str] = []
    for attempt in range(1, START_ATTEMPTS + 1):
        watched, log = _launch(users, work, name, target, server, poll_seconds, code)
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
    users: list[str],
    work: Path,
    name: str,
    target: Target,
    server: DovecotServer,
    poll_seconds: float,
    code: Path | None = None,
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
    env = {**os.environ, **({"PYTHONPATH": str(code)} if code is not None else {})}
    # run from the work folder: ``python -m`` puts its working folder first on the path
    return Watched(argv, log=log, env=env, cwd=work).start(), log


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


def peak_by_role(samples: list[ProcSample]) -> dict[str, float]:
    """Largest peak RSS (MB) per role, from the sampled process tree."""
    peaks: dict[str, float] = {}
    for sample in samples:
        role = role_of(sample.label)
        peaks[role] = max(peaks.get(role, 0.0), sample.peak_rss_kb / 1024)
    peaks.pop("other", None)
    return peaks


def _cpu_window(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per role (fetch, stream, deliver, run, broker) between two snapshots."""
    spent: dict[str, float] = {}
    for pid, (label, cpu) in after.items():
        role = role_of(label)
        spent[role] = spent.get(role, 0.0) + cpu - before.get(pid, (label, 0.0))[1]
    return spent


@contextmanager
def fetch_paused(watched: Watched) -> Iterator[None]:
    """Hold the fetch role (SIGSTOP) while the corpus lands and Dovecot indexes it.

    The peers start on a source whose index and POP3 sizes are already built; without the
    pause mailferry's clock also ran through Dovecot indexing 160 MB of new mail (seen as a
    3 s gap between the first and the second message fetched).
    """
    fetchers = [pid for pid, (label, _cpu) in watched.cpu_now().items() if role_of(label) == "fetch"]
    for pid in fetchers:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in fetchers:
            os.kill(pid, signal.SIGCONT)


def measure(
    corpus: Corpus,
    work: Path,
    target: Target,
    profile_dir: Path | None = None,
    warm_with: Corpus | None = None,
    code: Path | None = None,
    tag: str = "",
    poll_now: bool = False,
) -> Result:
    """One mailferry row; ``warm_with`` is a corpus delivered first, unmeasured, on the same
    running pipeline (the broker's JIT and every role's first-time paths behind it, as in a
    service that has been running for a while). ``poll_now``: when the clock starts, the fetch
    role is told to poll at once (SIGUSR1 to ``mailferry run``, as running ``fetchmail`` again
    wakes its daemon) instead of each mailbox waiting for its next 1 s timer; the peers are
    started at that moment too."""
    name = f"d. mailferry → {target.label}" + (f" ({tag})" if tag else "")
    key = target.label.split()[0].lower()
    try:
        running = start(corpus.mailboxes, work, key, target, code=code)
    except RuntimeError as exc:
        target.close()
        return Result(name, corpus.messages, 0, corpus.total_bytes, 0, 0, 0, note=str(exc), runnable=False)
    wanted = set(corpus.recipients)
    try:
        if warm_with is not None:
            warmed = _deliver_unmeasured(running, warm_with, target)
            running.notes.append(
                f"warmed with {warm_with.messages} messages" + ("" if warmed else " (timed out)")
            )
        moves = stage(running.server, corpus)
        config_path = work / f"mailferry-{key}.toml"
        usage_before = _usage(config_path)
        sampler = None
        if profile_dir is not None:
            sampler = profiling.Sampler(running.watched.pid, profile_dir / f"{key}.raw").start()
        with fetch_paused(running.watched):
            for staged, visible in moves:
                staged.rename(visible)
            warm(running.server, corpus.mailboxes)
            before = running.watched.cpu_now()
            began = time.time()
        if poll_now:
            running.watched.send(signal.SIGUSR1)
        done = wait_until(lambda: wanted <= target.arrivals().keys(), 1800, poll=0.2)
        after = running.watched.cpu_now()
        usage_after = _usage(config_path)
        try:
            stages = timeline.describe(*timeline.stage_times(work / f"state-{key}", "bench.audit", began))
        except Exception as exc:  # a timeline is a nice-to-have; never lose the row over it
            stages = f"no stage timeline ({type(exc).__name__}: {exc})"
        if sampler is not None:
            print(profiling.report(sampler.stop()))
        arrived = {k: v for k, v in target.arrivals().items() if k in wanted}
        cpu_by_role = _cpu_window(before, after)
        samples = running.watched.samples.values()
        peaks = peak_by_role(list(samples))
        peak_role = max((mb for role, mb in peaks.items() if role != "broker"), default=0.0)
    finally:
        code = running.stop()
        target.close()
    note = "CPU s " + ", ".join(f"{role} {s:.1f}" for role, s in sorted(cpu_by_role.items()) if s >= 0.05)
    note += "; peak RSS MB " + ", ".join(f"{role} {mb:.0f}" for role, mb in sorted(peaks.items()))
    note += f"; {stages}"
    if usage_before is not None and usage_after is not None:
        note += "; " + kafka_usage.per_mail(usage_before, usage_after, len(arrived))
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
        sum(cpu_by_role.values()),
        peak_role,
        note=note,
    )


def _usage(config_path: Path) -> kafka_usage.Usage | None:
    try:
        return kafka_usage.snapshot(config_path)
    except Exception as exc:  # a figure to add, never a reason to lose the row
        print(f"no Kafka usage figures: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def _deliver_unmeasured(running: Running, corpus: Corpus, target: Target) -> bool:
    for staged, visible in stage(running.server, corpus):
        staged.rename(visible)
    wanted = set(corpus.recipients)
    return wait_until(lambda: wanted <= target.arrivals().keys(), 600, poll=0.2)


TARGETS = ("smtp", "maildir", "ews")


def throughput(
    corpus: Corpus,
    work: Path,
    sink: SmtpSink,
    profile_dir: Path | None = None,
    targets: tuple[str, ...] = TARGETS,
    warm_with: Corpus | None = None,
    code: Path | None = None,
    tag: str = "",
    poll_now: bool = False,
) -> list[Result]:
    reason = not_runnable_reason()
    if reason:
        return [
            Result(
                "d. mailferry", corpus.messages, 0, corpus.total_bytes, 0, 0, 0, note=reason, runnable=False
            )
        ]
    makers: dict[str, Callable[[], Target]] = {
        "smtp": lambda: smtp(sink),
        "maildir": lambda: maildir(work),
        "ews": lambda: ews(corpus),
    }
    return [
        measure(corpus, work, makers[name](), profile_dir, warm_with, code, tag, poll_now) for name in targets
    ]


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
