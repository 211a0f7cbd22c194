"""Runners (a)-(c): the POP3 limit, fetchmail over SMTP, getmail6 to Maildir.

Each runner gets a fresh seeded Dovecot, runs its client as a measured child process, checks
that everything arrived, and stops the server again. Dovecot's own CPU is not counted for any
client: it is the same server work for all of them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from peers import fetchmail_argv, getmail_argv, maildir_contents, make_maildir
from procwatch import run_to_end
from results import LIMIT_ROW, Result
from sink import SmtpSink
from source import Corpus, seeded_server

from mailferry_testkit.dovecot import DovecotServer

HERE = Path(__file__).resolve().parent


def with_server(corpus: Corpus, work: Path, body: Callable[[DovecotServer], Result]) -> Result:
    server = seeded_server(corpus, work / "dovecot")
    try:
        return body(server)
    finally:
        server.remove()


def _accounts(corpus: Corpus) -> list[str]:
    return [f"{user}:{Corpus.password(user)}" for user in corpus.mailboxes]


def pop_client(corpus: Corpus, work: Path, mode: str, name: str) -> Result:
    def body(server: DovecotServer) -> Result:
        log = work / f"{mode}.log"
        argv = [sys.executable, str(HERE / "pop_clients.py"), mode, str(server.pop3_port), *_accounts(corpus)]
        measured = run_to_end(argv, log=log)
        try:
            out = json.loads(log.read_text().strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {"messages": 0, "bytes": 0}
        ok = measured.exit_code == 0 and out["bytes"] >= corpus.total_bytes
        return Result(
            name,
            corpus.messages,
            out["messages"] if ok else 0,
            corpus.total_bytes,
            measured.wall_s,
            measured.cpu_s,
            measured.peak_rss_mb,
            note="" if ok else f"failed, see {log}",
        )

    return with_server(corpus, work, body)


def drain(corpus: Corpus, work: Path) -> Result:
    return pop_client(corpus, work, "drain", LIMIT_ROW)


def poplib_loop(corpus: Corpus, work: Path) -> Result:
    return pop_client(corpus, work, "poplib", "a. poplib loop")


def sink_limit(corpus: Corpus, work: Path, sink: SmtpSink) -> Result:
    """A Python SMTP client against the same sink: the corpus pushed from disk with smtplib.

    Not a ceiling (fetchmail, in C, can beat it on large messages): a reference for what the
    sink plus a plain Python client reach on this machine."""
    sink.reset()
    log = work / "smtp_push.log"
    measured = run_to_end(
        [sys.executable, str(HERE / "smtp_push.py"), str(sink.port), str(corpus.folder)], log=log
    )
    delivered = len({a.bench_id for a in sink.arrivals()})
    note = "" if measured.exit_code == 0 else f"exit {measured.exit_code}, see {log}"
    return Result(
        "a. smtplib → SMTP sink",
        corpus.messages,
        delivered,
        corpus.total_bytes,
        measured.wall_s,
        measured.cpu_s,
        measured.peak_rss_mb,
        note=note,
    )


def fetchmail(corpus: Corpus, work: Path, sink: SmtpSink) -> Result:
    def body(server: DovecotServer) -> Result:
        sink.reset()
        argv, env = fetchmail_argv(corpus, server.pop3_port, sink.port, work / "fetchmail")
        log = work / "fetchmail.log"
        measured = run_to_end(argv, env=env, log=log)
        arrivals = sink.arrivals()
        delivered = len({a.bench_id for a in arrivals})
        wrong = sum(1 for a in arrivals if not _addressed_to(a.recipients, corpus.recipients.get(a.bench_id)))
        note = f"exit {measured.exit_code}" if measured.exit_code not in (0,) else ""
        if wrong:
            note += f" {wrong} to the wrong recipient"
        return Result(
            "b. fetchmail → SMTP",
            corpus.messages,
            delivered,
            corpus.total_bytes,
            measured.wall_s,
            measured.cpu_s,
            measured.peak_rss_mb,
            note=note.strip(),
        )

    return with_server(corpus, work, body)


def _addressed_to(recipients: tuple[str, ...], owner: str | None) -> bool:
    return owner is not None and any(r.split("@", 1)[0] == owner for r in recipients)


def getmail(corpus: Corpus, work: Path) -> Result:
    def body(server: DovecotServer) -> Result:
        maildir = make_maildir(work / "getmail-maildir")
        argv = getmail_argv(corpus, server.pop3_port, maildir, work / "getmail")
        log = work / "getmail.log"
        measured = run_to_end(argv, log=log)
        delivered, _ = maildir_contents(maildir)
        note = f"exit {measured.exit_code}, see {log}" if measured.exit_code != 0 else ""
        stalls = log.read_text(errors="replace").count("timed out")
        if stalls:
            # getmail6 before 6.19 can miss its delivery child's exit and then waits 60 s
            note += f"; {stalls} waits of 60 s lost to getmail6's parent/child race (getmail6/getmail6#226)"
        return Result(
            "c. getmail6 → Maildir",
            corpus.messages,
            delivered,
            corpus.total_bytes,
            measured.wall_s,
            measured.cpu_s,
            measured.peak_rss_mb,
            note=note,
        )

    return with_server(corpus, work, body)
