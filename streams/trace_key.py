"""The key that signs mailferry's trace header: configured, or generated once per state folder.

The loop guard obeys a trace header only when its MAC verifies, so the key must be the
same for every stream worker of a deployment and unknown to senders. One host needs no
setup: the first role to start writes a random key into the state folder (mode 0600,
linked into place atomically, so two roles starting together end up with the same key). Several
hosts configure the same secret reference (``stream.trace_key = "env:NAME"`` or
``"file:/path"``).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from mailferry.config.models import MailferryConfig
from mailferry.errors import ConfigError

KEY_FILE = "trace.key"
MIN_KEY_CHARS = 32


def _checked(text: str, where: str) -> bytes:
    key = text.strip()
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"{where}: the trace key needs at least {MIN_KEY_CHARS} characters")
    return key.encode("utf-8")


def _read_private(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the trace key is readable by other users (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    return _checked(path.read_text(encoding="utf-8"), str(path))


def load_trace_key(config: MailferryConfig) -> bytes:
    """The configured key, else the state folder's key file, created on first use."""
    configured = config.stream.trace_key
    if configured is not None:
        return _checked(configured.reveal(), f"stream.trace_key ({configured.reference})")
    folder = config.state_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / KEY_FILE
    if not path.exists():
        _create(path)
    return _read_private(path)


def _create(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place: a role that starts at the
    same moment either sees no file or a complete one, never a half-written key."""
    draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another role won the race: everyone uses its key
    finally:
        draft.unlink(missing_ok=True)
