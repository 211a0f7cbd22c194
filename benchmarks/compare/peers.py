"""Configurations for the peers, fetchmail and getmail6, as their users would write them.

Both fetch every mailbox of the corpus in one invocation: the personal ones single-drop, the
global one multidrop by its envelope header. Settings that this machine needs (BRIEF §6):
fetchmail runs as root with ``sslproto ""`` to talk to a server without TLS and ``keep`` so the
server is left as it was; getmail6 delivers to Maildir as root only when the destination names
a ``user``, so its Maildir belongs to ``nobody``.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from corpus import DOMAIN, ENVELOPE_HEADER, GLOBAL_MAILBOX
from source import Corpus

MAILDIR_USER = "nobody"


def fetchmail_argv(
    corpus: Corpus, pop3_port: int, smtp_port: int, home: Path, daemon: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """One poll statement for the server, one user clause per mailbox; delivery over SMTP.

    With ``daemon`` (seconds) fetchmail keeps polling and fetches only what it has not seen
    (by UIDL, kept in its id file) instead of everything once."""
    home.mkdir(parents=True, exist_ok=True)
    lines = [
        "set no bouncemail",
        "set no syslog",
        f"poll 127.0.0.1 service {pop3_port} proto pop3 auth password",
        f'    envelope "{ENVELOPE_HEADER}" localdomains {DOMAIN} no dns' + (" uidl" if daemon else ""),
    ]
    for user in corpus.mailboxes:
        target = "to * here" if user == GLOBAL_MAILBOX else f'is "{user}" here'
        lines += [
            f'  user "{user}" there with password "{Corpus.password(user)}" {target}',
            f'    smtphost "127.0.0.1/{smtp_port}" smtpaddress {DOMAIN} sslproto "" keep'
            + ("" if daemon else " fetchall"),
        ]
    rc = home / "fetchmailrc"
    rc.write_text("\n".join(lines) + "\n")
    rc.chmod(0o600)
    argv = [
        "fetchmail",
        "-f",
        str(rc),
        "--nodetach",
        "--nosyslog",
        "--idfile",
        str(home / "fetchids"),
        "--pidfile",
        str(home / "fetchmail.pid"),
        *(["--daemon", str(daemon)] if daemon else []),
    ]
    return argv, {**os.environ, "HOME": str(home)}


def make_maildir(path: Path) -> Path:
    """A Maildir owned by ``nobody``, whose parent ``nobody`` can list: getmail6 refuses to
    deliver otherwise, and the benchmark's work folder comes from ``mkdtemp`` (mode 0700)."""
    shutil.rmtree(path, ignore_errors=True)
    owner = pwd.getpwnam(MAILDIR_USER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(path.parent.stat().st_mode | 0o055)
    for sub in ("", "cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
        os.chown(path / sub, owner.pw_uid, owner.pw_gid)
    return path


def getmail_argv(
    corpus: Corpus, pop3_port: int, maildir: Path, home: Path, follow: bool = False
) -> list[str]:
    """One rc file per mailbox, all given to one getmail run; everything into one Maildir.

    With ``follow`` getmail fetches only messages it has not seen (its oldmail files), for a
    loop that runs it again and again."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    argv = ["getmail", "--getmaildir", str(home), "--quiet"]
    for user in corpus.mailboxes:
        retriever = [
            "[retriever]",
            "type = MultidropPOP3Retriever" if user == GLOBAL_MAILBOX else "type = SimplePOP3Retriever",
            "server = 127.0.0.1",
            f"port = {pop3_port}",
            f"username = {user}",
            f"password = {Corpus.password(user)}",
        ]
        if user == GLOBAL_MAILBOX:
            retriever.append(f"envelope_recipient = {ENVELOPE_HEADER}:1")
        rc = home / f"getmailrc-{user}"
        rc.write_text(
            "\n".join(
                [
                    *retriever,
                    "",
                    "[destination]",
                    "type = Maildir",
                    f"path = {maildir}/",
                    f"user = {MAILDIR_USER}",
                    "",
                    "[options]",
                    f"read_all = {'false' if follow else 'true'}",
                    "delete = false",
                    "verbose = 0",
                    "message_log_syslog = false",
                ]
            )
            + "\n"
        )
        argv += ["--rcfile", rc.name]
    return argv


def maildir_contents(path: Path) -> tuple[int, int]:
    files = [entry for sub in ("new", "cur") for entry in (path / sub).iterdir() if entry.is_file()]
    return len(files), sum(entry.stat().st_size for entry in files)
