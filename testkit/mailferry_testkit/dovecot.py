"""A real Dovecot (POP3 + IMAP, plain and TLS) started on loopback for tests, demos and benchmarks.

The fetch producers are tested against the real server rather than a fake so that the quirks
that matter (UIDL formats, PIPELINING, STARTTLS, UIDVALIDITY, maildir moves) are Dovecot's, not
ours. The server runs in the foreground as a child process with its configuration, test CA and
log under ``root``. What Dovecot's unprivileged processes must reach (sockets, passwd files,
Maildirs) lives in a private ``/tmp/mailferry-dovecot-*`` folder instead, linked as
``root/mail``: test folders such as pytest's sit under a ``0700`` parent (which pytest resets
whenever any session starts), and the ``dovecot`` user could not traverse it.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from mailferry.errors import SetupError
from mailferry_testkit.certs import make_test_pki
from mailferry_testkit.child import ChildServer

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"

_CONF = """\
protocols = pop3 imap
listen = 127.0.0.1
base_dir = {runtime}/run
state_dir = {runtime}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{runtime}/mail/%u
mail_max_userip_connections = 1000
# IDLE notices new mail by inotify; where inotify is unavailable, check every second, not 30 s
mailbox_idle_check_interval = 1 secs
pop3_uidl_format = %08Xu%08Xv
pop3_lock_session = {pop3_lock}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{oauth2_passdb}passdb {{
  driver = passwd-file
  mechanisms = plain login apop none
  args = scheme=PLAIN {runtime}/users/%u
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={runtime}/mail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
"""


_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {runtime}/oauth2.conf.ext
}}
"""
_OAUTH2_CONF = """\
introspection_url = {url}
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


class DovecotServer(ChildServer):
    """One Dovecot instance under ``root``; use ``start()``/``stop()`` or ``with``."""

    stop_grace = 10.0

    def __init__(
        self, root: Path, *, oauth2_introspection_url: str | None = None, pop3_lock_session: bool = False
    ) -> None:
        """``oauth2_introspection_url``: also accept XOAUTH2/OAUTHBEARER, checking each token by
        POSTing ``token=…`` there (RFC 7662 style: ``{"active": true, "username": …}``).
        ``pop3_lock_session``: refuse a second POP3 session of a user while one is open
        (``-ERR [IN-USE]``), which makes overlapping sessions visible to a test."""
        super().__init__()
        self.root = root.resolve()
        self.pop3_lock_session = pop3_lock_session
        self.oauth2_introspection_url = oauth2_introspection_url
        self.pop3_port = self.pop3s_port = self.imap_port = self.imaps_port = 0
        self.ca_file = self.root / "pki" / "ca.pem"
        self.conf_file = self.root / "dovecot.conf"
        self.log_file = self.root / "dovecot.log"
        self.runtime = Path(tempfile.mkdtemp(prefix="mailferry-dovecot-"))
        self.runtime.chmod(0o711)
        atexit.register(shutil.rmtree, self.runtime, True)  # Maildirs must not outlive the process
        self._users: dict[str, str] = {}
        self._seq = 0
        self._uid = pwd.getpwnam("dovecot").pw_uid
        self._gid = grp.getgrnam("dovecot").gr_gid

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> DovecotServer:
        """Write the configuration, start Dovecot, return once all four listeners accept."""
        if os.geteuid() != 0:
            raise SetupError("the test Dovecot must be started as root")
        self.root.mkdir(parents=True, exist_ok=True)
        mail = self.runtime / "mail"
        mail.mkdir(exist_ok=True)
        os.chown(mail, self._uid, self._gid)
        link = self.root / "mail"
        if not link.is_symlink():
            link.symlink_to(mail)
        pki = make_test_pki(self.root / "pki")
        for user in self._users:
            self._write_passwd(user)
        mechanisms, oauth2_passdb = "plain login apop", ""
        if self.oauth2_introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            oauth2_conf = self.runtime / "oauth2.conf.ext"
            oauth2_conf.write_text(_OAUTH2_CONF.format(url=self.oauth2_introspection_url))
            oauth2_conf.chmod(0o644)
            oauth2_passdb = _OAUTH2_PASSDB.format(runtime=self.runtime)
        last_error = ""
        for _attempt in range(3):
            self.pop3_port, self.pop3s_port, self.imap_port, self.imaps_port = _free_ports(4)
            self.conf_file.write_text(
                _CONF.format(
                    root=self.root,
                    runtime=self.runtime,
                    mechanisms=mechanisms,
                    pop3_lock="yes" if self.pop3_lock_session else "no",
                    oauth2_passdb=oauth2_passdb,
                    cert=pki.cert_file,
                    key=pki.key_file,
                    pop3=self.pop3_port,
                    pop3s=self.pop3s_port,
                    imap=self.imap_port,
                    imaps=self.imaps_port,
                )
            )
            self._process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf_file)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready(timeout):
                return self
            last_error = self._reap()
        raise SetupError(f"Dovecot did not start: {last_error}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        pending = [self.pop3_port, self.pop3s_port, self.imap_port, self.imaps_port]
        while pending and time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", pending[0]), timeout=1):
                    pending.pop(0)
            except OSError:
                time.sleep(0.05)
        return not pending

    def _reap(self) -> str:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.terminate()
        _, err = self._process.communicate(timeout=10)
        self._process = None
        log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        return (err.decode(errors="replace") + log).strip()

    # -- users and mail ---------------------------------------------------------------------
    def _write_passwd(self, user: str) -> None:
        """One passwd file per user: Dovecot rechecks a known file at most once a second,
        so a user added just after another one's login would otherwise be refused."""
        folder = self.runtime / "users"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)  # Dovecot's auth process reads it as its own user, whatever the umask
        tmp = folder / f".{user}.tmp"
        tmp.write_text(f"{user}:{{PLAIN}}{self._users[user]}::::::\n")
        tmp.chmod(0o644)
        tmp.rename(folder / user)

    def add_user(self, name: str, password: str) -> None:
        """Add a user (re-passwording takes effect only after Dovecot's once-a-second recheck)."""
        if ":" in name or ":" in password or "\n" in name + password:
            raise ValueError("user names and passwords may not contain ':' or newlines")
        if "/" in name or name.startswith("."):
            raise ValueError("user names may not contain '/' or start with '.'")
        self._users[name] = password
        self._write_passwd(name)
        self._maildir(name, "INBOX")

    def _maildir(self, user: str, folder: str) -> Path:
        base = self.runtime / "mail" / user
        path = base if folder.upper() == "INBOX" else base / f".{folder.replace('/', '.')}"
        for sub in ("", "cur", "new", "tmp"):
            target = path / sub if sub else path
            if not target.exists():
                target.mkdir(parents=True)
                os.chown(target, self._uid, self._gid)
        if path != base:
            marker = path / "maildirfolder"
            if not marker.exists():
                marker.touch()
                os.chown(marker, self._uid, self._gid)
        return path

    def seed(self, user: str, messages: list[bytes], folder: str = "INBOX") -> None:
        """Deliver ``messages`` into the user's Maildir ``new/`` as Dovecot's own user."""
        path = self._maildir(user, folder)
        for message in messages:
            self._seq += 1
            name = f"{int(time.time())}.M{self._seq}P{os.getpid()}Q{uuid.uuid4().hex[:8]}.mailferry"
            tmp = path / "tmp" / name
            tmp.write_bytes(message)
            os.chown(tmp, self._uid, self._gid)
            tmp.rename(path / "new" / name)

    def message_count(self, user: str, folder: str = "INBOX") -> int:
        """How many messages are left on the server (files in ``new/`` and ``cur/``).

        Messages flagged deleted but not yet expunged still count: they are still there.
        """
        path = self._maildir(user, folder)
        return sum(1 for sub in ("new", "cur") for entry in (path / sub).iterdir() if entry.is_file())

    def _doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [DOVEADM, "-c", str(self.conf_file), *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SetupError(f"doveadm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        out = self._doveadm("mailbox", "status", "-u", user, "uidvalidity", folder)
        return int(out.strip().split("=", 1)[1])

    def change_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Give the folder a new UIDVALIDITY (as a server restore would); returns the new value."""
        new = self.uidvalidity(user, folder) + 1
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        return new

    def remove(self) -> None:
        """Stop and delete everything under ``root`` and the private runtime folder."""
        self.stop()
        for folder in (self.root, self.runtime):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(folder)
