"""Maildir target: one Maildir per recipient under a folder, for archives, demos and tests.

Each message is written to ``tmp/`` and linked into ``new/`` under a name derived from the
dedup key, so delivery is atomic (a reader never sees half a message) and idempotent (the
second link of the same key fails with ``FileExistsError`` instead of making a copy).
Files are 0600 and folders 0700 whatever the umask: mail is for its owner only.
A mail reader that has seen the message moves it to ``cur/`` with a ``:2,<flags>`` suffix;
``already_delivered`` looks there too.

Group commit: a batch writes its messages' files to ``tmp/`` and fsyncs them from several
threads at once (``WRITERS``), so ext4 makes them durable in a few shared journal commits
instead of one commit per file, one after another; only then is each file linked into
``new/``, and each ``new/`` folder is fsynced once. Only after that does the worker record
the batch as delivered. A crash before it may lose links, never a file whose bytes are not
on disk; the records are read again and the same names are written again. Each item keeps
its own outcome: one file that cannot be written or synced fails that item alone.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mailferry.config import Tenant
from mailferry.config.targets import MaildirTarget as MaildirConfig
from mailferry.consumers.target import Committing, DeliveryItem, DeliveryTarget, Outcome
from mailferry.errors import PermanentError, TenantError, TransientError
from mailferry.mail import added_headers

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024
WRITERS = 8  # files of a batch written and fsynced at once; 1: one after another, as before
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
        self._lanes = WRITERS
        self._writers = (
            ThreadPoolExecutor(WRITERS, thread_name_prefix=f"maildir-{name}") if WRITERS > 1 else None
        )

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
        """Every item written to ``tmp/`` and fsynced (several at once), then linked into
        ``new/``, then one fsync per ``new/`` folder touched.

        ``committing`` is not called: a Maildir is asked by file name, which the names
        make exact, so no write-ahead entry is needed.
        """
        outcomes: list[Outcome] = [None] * len(items)
        boxes: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            if self.max_message_size is not None and item.size > self.max_message_size:
                outcomes[index] = PermanentError(
                    f"message of {item.size} bytes is over this target's limit of {self.max_message_size}",
                    reason_code="message-too-large",
                )
            else:
                boxes.setdefault(mailbox_dirname(item.mailbox), []).append(index)
        files: list[_File] = []
        for dirname, indexes in boxes.items():
            box = self.root / dirname
            names = {index: message_filename(items[index].dedup_key) for index in indexes}
            try:
                self._folders(box)
                read = self._in_cur(box, set(names.values()))
            except OSError as exc:
                for index in indexes:
                    outcomes[index] = _classify(exc, box)
                continue
            at, suffix = str(box), f".{os.getpid()}.{uuid.uuid4().hex[:12]}."
            files += [
                _File(index, items[index], box, f"{at}/tmp/{name}{suffix}{index}", f"{at}/new/{name}")
                for index, name in names.items()
                if name not in read
            ]
        linked: dict[Path, list[int]] = {}  # per mailbox folder (one Path object per box)
        for file, error in zip(files, self._write_all(files), strict=True):
            try:
                if error is None and _link(file):
                    linked.setdefault(file.box, []).append(file.index)
            except OSError as exc:
                error = exc
            try:
                os.unlink(file.tmp)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("maildir %s: %s not removed: %s", self.name, file.tmp, exc)
            if error is not None:
                outcomes[file.index] = _classify(error, file.box) if isinstance(error, OSError) else error
        for box, indexes in linked.items():
            folder = box / "new"
            try:
                _fsync_dir(folder)
            except OSError as exc:
                for index in indexes:
                    outcomes[index] = _classify(exc, folder)
        return outcomes

    def _folders(self, box: Path) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (box, box / "tmp", box / "new", box / "cur"):
            folder.mkdir(mode=0o700, exist_ok=True)

    def _write_all(self, files: list[_File]) -> list[BaseException | None]:
        """Each file written and fsynced; the batch's files from ``WRITERS`` threads at once,
        each thread a share of them (a thread-pool task per file cost more CPU than the write)."""
        lanes = min(self._lanes, len(files))
        if self._writers is None or lanes < 2:
            return [_write(file) for file in files]
        errors: list[BaseException | None] = [None] * len(files)
        shares = self._writers.map(_write_each, [files[lane::lanes] for lane in range(lanes)])
        for lane, share in enumerate(shares):
            errors[lane::lanes] = share
        return errors

    def already_delivered(self, item: DeliveryItem) -> bool | None:
        box = self.mailbox_path(item.mailbox)
        name = message_filename(item.dedup_key)
        try:
            return (box / "new" / name).exists() or bool(self._in_cur(box, {name}))
        except OSError:
            return None

    def close(self) -> None:
        if self._writers is not None:
            self._writers.shutdown(wait=True)

    @staticmethod
    def _in_cur(box: Path, names: set[str]) -> set[str]:
        """Which of ``names`` a reader has moved to ``cur/`` (``<name>`` or ``<name>:2,<flags>``):
        one listing of the folder for the whole batch."""
        try:
            with os.scandir(box / "cur") as entries:
                return {e.name.partition(":")[0] for e in entries} & names
        except FileNotFoundError:
            return set()


@dataclass(frozen=True)
class _File:
    """One message of a batch on its way from ``tmp/`` into ``new/``."""

    index: int
    item: DeliveryItem
    box: Path
    tmp: str
    new: str


def _write(file: _File) -> BaseException | None:
    """Write and fsync ``file.tmp``; the error, if any (the batch's other files go on)."""
    try:
        fd = os.open(file.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out, file.item.open_message() as source:
            out.write(added_headers.prefix(file.item.add_headers))
            while chunk := source.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except Exception as exc:
        return exc
    return None


def _write_each(files: list[_File]) -> list[BaseException | None]:
    return [_write(file) for file in files]


def _link(file: _File) -> bool:
    """Link the durable ``file.tmp`` into ``new/``; False when that name was there already."""
    try:
        os.link(file.tmp, file.new)
    except FileExistsError:
        return False
    return True


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
