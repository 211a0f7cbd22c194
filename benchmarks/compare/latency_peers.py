"""The latency scenario for the peers: fetchmail as a daemon polling every second (to the SMTP
sink) and getmail6 run again every second by a shell loop (to Maildir), getmail6 having no
daemon mode of its own."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path

from latency import LatencyResult, MaildirWatcher, drip, sink_arrivals, summarise, wait_until, warmup_message
from peers import fetchmail_argv, getmail_argv, make_maildir
from procwatch import Watched
from sink import SmtpSink
from source import Corpus

from mailferry_testkit.dovecot import DovecotServer

WARMUP_TIMEOUT = 60.0
SETTLE_TIMEOUT = 60.0


def _server(corpus: Corpus, root: Path) -> DovecotServer:
    shutil.rmtree(root, ignore_errors=True)
    server = DovecotServer(root).start()
    for user in corpus.mailboxes:
        server.add_user(user, Corpus.password(user))
        server.seed(user, [warmup_message(user)])
    return server


def _scenario(
    name: str,
    corpus: Corpus,
    server: DovecotServer,
    watched: Watched,
    arrivals: Callable[[], dict[str, float]],
    rate: float,
    seconds: float,
) -> LatencyResult:
    users = corpus.mailboxes
    try:
        if not wait_until(lambda: all(f"warmup-{u}" in arrivals() for u in users), WARMUP_TIMEOUT):
            return summarise(name, {}, {}, note=f"warm-up not delivered in {WARMUP_TIMEOUT:.0f} s")
        sent = drip(server, users, rate, seconds, seed=corpus.spec.seed)
        wait_until(lambda: all(key in arrivals() for key in sent), SETTLE_TIMEOUT, poll=0.5)
        return summarise(name, sent, arrivals())
    finally:
        watched.signal_group(signal.SIGTERM)
        watched.wait(timeout=30)
        server.remove()


def fetchmail(corpus: Corpus, work: Path, sink: SmtpSink, rate: float, seconds: float) -> LatencyResult:
    server = _server(corpus, work / "dovecot-latency-fetchmail")
    sink.reset()
    argv, env = fetchmail_argv(corpus, server.pop3_port, sink.port, work / "fetchmail-latency", daemon=1)
    (work / "fetchmail-latency" / "fetchids").unlink(missing_ok=True)
    watched = Watched(argv, env=env, log=work / "fetchmail-latency.log").start()
    return _scenario(
        "b. fetchmail -d 1 → SMTP", corpus, server, watched, lambda: sink_arrivals(sink), rate, seconds
    )


def getmail(corpus: Corpus, work: Path, rate: float, seconds: float) -> LatencyResult:
    server = _server(corpus, work / "dovecot-latency-getmail")
    maildir = make_maildir(work / "getmail-latency-maildir")
    argv = getmail_argv(corpus, server.pop3_port, maildir, work / "getmail-latency", follow=True)
    loop = " ".join(f"'{arg}'" for arg in argv)
    watched = Watched(
        ["sh", "-c", f"while :; do {loop}; sleep 1; done"], log=work / "getmail-latency.log"
    ).start()
    watcher = MaildirWatcher(maildir).start()
    try:
        return _scenario(
            "c. getmail6 every 1 s → Maildir",
            corpus,
            server,
            watched,
            lambda: dict(watcher.seen),
            rate,
            seconds,
        )
    finally:
        watcher.stop()
