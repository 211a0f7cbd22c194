"""NTLM for the EWS EMULATOR (not Microsoft Exchange), as IIS does it: bound to the connection.

The client sends a Negotiate token, gets a 401 with a challenge, answers with the
Authenticate token; from then on the *connection* is authenticated and later requests on
it carry no Authorization header. Each leg resends the request body (requests-ntlm rewinds
it), which is what a streamed CreateItem must survive. pyspnego is the acceptor; it reads
the accounts from the flat file named by ``NTLM_USER_FILE`` (``DOMAIN:USER:PASSWORD``), so
this module keeps one such file per process for every emulator that enables NTLM.
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from pathlib import Path

import spnego
from spnego.exceptions import SpnegoError

_lock = threading.Lock()
_user_file: Path | None = None


def register(domain: str, user: str, password: str) -> None:
    """Let ``DOMAIN\\user`` log in with NTLM to any emulator in this process."""
    global _user_file
    with _lock:
        if _user_file is None:
            fd, name = tempfile.mkstemp(prefix="ews-emulator-ntlm-")
            os.close(fd)
            _user_file = Path(name)
            os.environ["NTLM_USER_FILE"] = name
        with _user_file.open("a", encoding="utf-8") as out:
            out.write(f"{domain}:{user}:{password}\n")


class NtlmConnection:
    """The NTLM state of one HTTP connection."""

    def __init__(self) -> None:
        self._context: spnego.ContextProxy | None = None
        self.user: str | None = None  # the authenticated account, without its domain

    def step(self, header: str) -> tuple[str | None, bool]:
        """Feed an ``Authorization: NTLM …`` header: (challenge to send back, refused)."""
        token = header.partition(" ")[2].strip()
        try:
            data = base64.b64decode(token, validate=True)
        except ValueError:
            return None, True
        if data[8:12] == b"\x01\x00\x00\x00":  # a Negotiate message starts a new handshake
            self._context = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
            self.user = None
        if self._context is None:
            return None, True
        try:
            out = self._context.step(data)
        except SpnegoError:
            self._context = None
            return None, True
        if not self._context.complete:
            return base64.b64encode(out or b"").decode(), False
        self.user = str(self._context.client_principal).rpartition("\\")[2].lower()
        self._context = None
        return None, False
