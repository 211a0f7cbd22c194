"""Maildir target: one Maildir per recipient under a folder, for archives, demos and tests.

Each message is written to ``tmp/`` and linked into ``new/`` under a name derived from the
dedup key, so delivery is atomic (a reader never sees half a message) and idempotent (the
second link of the same key fails with ``FileExistsError`` instead of making a copy).
Files are 0600 and folders 0700 whatever the umask: mail is for its owner only.
A mail reader that has seen the message moves it to ``cur/`` with a ``:2,<flags>`` suffix;
``already_delivered`` looks there too.

Group commit: a batch writes (and fsyncs) each message's file and links it into ``new/``,
then fsyncs each ``new/`` folder once; only after that fsync does the worker record the
batch as delivered. A crash before it may lose links, never half a message; the records
are read again and the same names are written again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from mailferry.config import Tenant
from mailferry.config.targets import MaildirTarget as MaildirConfig
from mailferry.consumers.target import Committing, DeliveryItem, DeliveryTarget, Outcome
from mailferry.errors import PermanentError, TenantError, TransientError
from mailferry.mail import added_headers

CHUNK = 1024 * 1024
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@+-_=")


def mailbox_dirname(address: str) -> str:
    """The folder of one recipient: the lower-cased address, other characters %-escaped.

    A leading dot is escaped too, so a mailbox never looks like a Maildir++ subfolder.
    """
    out = []
    for index, char in enumerate(address.strip().lower()):
        if char in _SAFE or (char == "." and index > 0):
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode())
    return "".join(out) or "%00"


def message_filename(dedup_key: str) -> str:
    """The file name in ``new/`` (and, before the flags, in ``cur/``) of one dedup key."""
    return "mailferry." + hashlib.sha256(dedup_key.encode()).hexdigest()[:40]


class MaildirDelivery:
    """Writes into ``<path>/<mailbox_dirname(recipient)>/{tmp,new,cur}``."""

    def __init__(self, name: str, root: Path, max_message_size: int | None = None) -> None:
        self.name = name
        self.root = root
        self.max_message_size = max_message_size

    def check_credentials(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _classify(exc, self.root) from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise TenantError(f"maildir {self.root}: not writable", reason_code="permission-denied")

    def mailbox_path(self, mailbox: str) -> Path:
        return self.root / mailbox_dirname(mailbox)

    def deliver(self, item: DeliveryItem) -> None:
        [outcome] = self.deliver_batch([item], lambda _items: None)
        if outcome is not None:
            raise outcome

    def deliver_batch(self, items: Sequence[DeliveryItem], committing: Committing) -> list[Outcome]:
        """Every item linked into ``new/``, then one fsync per ``new/`` folder touched.

        ``committing`` is not called: a Maildir is asked by file name, which the names
        make exact, so no write-ahead entry is needed.
        """
        outcomes: list[Outcome] = []
        linked: dict[Path, list[int]] = {}
        for index, item in enumerate(items):
            try:
                if self._link(item):
                    linked.setdefault(self.mailbox_path(item.mailbox) / "new", []).append(index)
                outcomes.append(None)
            except Exception as exc:  # this item's error; the others of the batch go on
                outcomes.append(_classify(exc, self.root) if isinstance(exc, OSError) else exc)
        for folder, indexes in linked.items():
            try:
                _fsync_dir(folder)
            except OSError as exc:
                for index in indexes:
                    outcomes[index] = _classify(exc, folder)
        return outcomes

    def _link(self, item: DeliveryItem) -> bool:
        """Write ``item`` to ``tmp/`` and link it into ``new/``; False when it was there already."""
        if self.max_message_size is not None and item.size > self.max_message_size:
            raise PermanentError(
                f"message of {item.size} bytes is over this target's limit of {self.max_message_size}",
                reason_code="message-too-large",
            )
        box = self.mailbox_path(item.mailbox)
        name = message_filename(item.dedup_key)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for folder in (box, box / "tmp", box / "new", box / "cur"):
                folder.mkdir(mode=0o700, exist_ok=True)
            if self._in_cur(box, name):
                return False
            tmp = box / "tmp" / f"{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
            try:
                self._write(tmp, item)
                try:
                    os.link(tmp, box / "new" / name)
                except FileExistsError:
                    return False
                return True
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise _classify(exc, box) from exc

    def already_delivered(self, item: DeliveryItem) -> bool | None:
        box = self.mailbox_path(item.mailbox)
        name = message_filename(item.dedup_key)
        try:
            return (box / "new" / name).exists() or self._in_cur(box, name)
        except OSError:
            return None

    def close(self) -> None:
        return None

    @staticmethod
    def _in_cur(box: Path, name: str) -> bool:
        cur = box / "cur"
        if (cur / name).exists():
            return True
        try:
            with os.scandir(cur) as entries:
                return any(e.name.startswith(name + ":") for e in entries)
        except FileNotFoundError:
            return False

    @staticmethod
    def _write(path: Path, item: DeliveryItem) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out, item.open_message() as source:
            out.write(added_headers.prefix(item.add_headers))
            while chunk := source.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _classify(exc: OSError, where: Path) -> Exception:
    """The error table of this target."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TenantError(f"maildir {where}: {exc.strerror}", reason_code="permission-denied")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return TransientError(f"maildir {where}: {exc.strerror}", reason_code="disk-full")
    return TransientError(f"maildir {where}: {exc.strerror or exc}", reason_code="io-error")


def create(tenant: Tenant, target: MaildirConfig) -> DeliveryTarget:
    return MaildirDelivery(target.name, target.path, target.max_message_size)
