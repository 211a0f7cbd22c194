"""Maildir target: atomic, one file per (mailbox, dedup key), errors classified."""

from __future__ import annotations

import errno
import io
import os
import threading
import time
from pathlib import Path

import pytest

from mailferry.consumers.target import DeliveryItem
from mailferry.consumers.targets.maildir import MaildirDelivery, _classify, mailbox_dirname, message_filename
from mailferry.errors import PermanentError, TenantError, TransientError


def _item(mailbox: str, dedup: str, body: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> DeliveryItem:
    return DeliveryItem(
        tenant="acme",
        mailbox=mailbox,
        dedup_key=dedup,
        message_id="<1@x>",
        size=len(body),
        sha256="0" * 64,
        open_message=lambda: io.BytesIO(body),
        add_headers=(("X-Mailferry-Trace", "acme; 1"),),
    )


def test_mailbox_dirname_is_safe_and_stable() -> None:
    assert mailbox_dirname("Alice@Acme.Example") == "alice@acme.example"
    assert mailbox_dirname(".hidden@x") == "%2Ehidden@x"
    assert mailbox_dirname("a/b@x") == "a%2Fb@x"
    assert "/" not in mailbox_dirname("../../etc@x")
    assert not mailbox_dirname("../../etc@x").startswith(".")


def test_deliver_writes_once_into_new_with_trace_header(tmp_path: Path) -> None:
    target = MaildirDelivery("archive", tmp_path)
    item = _item("bob@acme.example", "k1")
    assert target.already_delivered(item) is False
    target.deliver(item)
    target.deliver(item)
    box = tmp_path / "bob@acme.example"
    files = list((box / "new").iterdir())
    assert [f.name for f in files] == [message_filename("k1")]
    assert files[0].read_bytes() == b"X-Mailferry-Trace: acme; 1\r\nSubject: hi\r\n\r\nbody\r\n"
    assert list((box / "tmp").iterdir()) == []
    assert target.already_delivered(item) is True
    target.deliver(_item("bob@acme.example", "k2"))
    assert len(list((box / "new").iterdir())) == 2


def test_a_message_a_reader_moved_to_cur_is_not_written_again(tmp_path: Path) -> None:
    target = MaildirDelivery("archive", tmp_path)
    item = _item("bob@acme.example", "k1")
    target.deliver(item)
    box = tmp_path / "bob@acme.example"
    name = message_filename("k1")
    os.rename(box / "new" / name, box / "cur" / f"{name}:2,S")
    assert target.already_delivered(item) is True
    target.deliver(item)
    assert list((box / "new").iterdir()) == []


def test_over_the_size_limit_is_permanent(tmp_path: Path) -> None:
    target = MaildirDelivery("archive", tmp_path, max_message_size=10)
    with pytest.raises(PermanentError) as caught:
        target.deliver(_item("bob@acme.example", "k1"))
    assert caught.value.reason_code == "message-too-large"


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (errno.EACCES, TenantError, "permission-denied"),
        (errno.EROFS, TenantError, "permission-denied"),
        (errno.ENOSPC, TransientError, "disk-full"),
        (errno.EIO, TransientError, "io-error"),
    ],
)
def test_error_table(code: int, kind: type[Exception], reason: str) -> None:
    error = _classify(OSError(code, os.strerror(code)), Path("/x"))
    assert type(error) is kind
    assert getattr(error, "reason_code", None) == reason


def test_a_file_where_the_folder_should_be_is_retried_not_lost(tmp_path: Path) -> None:
    (tmp_path / "ro").write_text("a file where a folder should be")
    with pytest.raises(TransientError):
        MaildirDelivery("archive", tmp_path / "ro").deliver(_item("bob@acme.example", "k1"))


def test_mail_is_private_to_its_owner_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        target = MaildirDelivery("archive", tmp_path / "archive")
        target.check_credentials()
        target.deliver(_item("bob@acme.example", "k1"))
    finally:
        os.umask(previous)
    box = tmp_path / "archive" / "bob@acme.example"
    folders = [tmp_path / "archive", box, box / "tmp", box / "new", box / "cur"]
    assert {oct(f.stat().st_mode & 0o777) for f in folders} == {"0o700"}
    (written,) = (box / "new").iterdir()
    assert oct(written.stat().st_mode & 0o777) == "0o600"


class _DirFsyncs:
    """Counts fsync calls on directories (the real fsync still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_in: str | None = None) -> None:
        self.dirs: list[str] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if os.path.isdir(path):
                self.dirs.append(path)
                if fail_in is not None and fail_in in path:
                    raise OSError(errno.EIO, "I/O error")
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_batch_fsyncs_each_new_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = MaildirDelivery("archive", tmp_path)
    items = [_item(f"u{i % 2}@acme.example", f"k{i}") for i in range(10)]
    fsyncs = _DirFsyncs(monkeypatch)
    assert target.deliver_batch(items, lambda _: None) == [None] * 10
    assert sorted(fsyncs.dirs) == sorted(str(tmp_path / f"u{n}@acme.example" / "new") for n in (0, 1))
    for n in (0, 1):
        assert len(list((tmp_path / f"u{n}@acme.example" / "new").iterdir())) == 5
        assert list((tmp_path / f"u{n}@acme.example" / "tmp").iterdir()) == []

    fsyncs.dirs.clear()  # the same batch again (a record read again): no copy, nothing to sync
    assert target.deliver_batch(items, lambda _: None) == [None] * 10
    assert fsyncs.dirs == []
    assert sum(len(list((tmp_path / f"u{n}@acme.example" / "new").iterdir())) for n in (0, 1)) == 10


def test_one_bad_item_does_not_fail_its_batch(tmp_path: Path) -> None:
    target = MaildirDelivery("archive", tmp_path, max_message_size=100)
    items = [_item("bob@acme.example", "k1"), _item("bob@acme.example", "k2", b"x" * 200)]
    outcomes = target.deliver_batch(items, lambda _: None)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], PermanentError)
    assert len(list((tmp_path / "bob@acme.example" / "new").iterdir())) == 1


def test_a_failed_folder_sync_fails_that_folders_items_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MaildirDelivery("archive", tmp_path)
    items = [_item("bad@acme.example", "k1"), _item("ok@acme.example", "k2"), _item("bad@acme.example", "k3")]
    _DirFsyncs(monkeypatch, fail_in="bad@acme.example")
    outcomes = target.deliver_batch(items, lambda _: None)
    assert outcomes[1] is None
    assert isinstance(outcomes[0], TransientError) and isinstance(outcomes[2], TransientError)


class _FileFsyncs:
    """Watches fsync calls on files (the real fsync still runs, after ``delay``): how many ran
    at once, and whether a file's name was already in ``new/`` when its bytes were synced."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0, fail: str | None = None) -> None:
        self.synced: list[str] = []
        self.linked_before_sync: list[str] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        real = os.fsync

        def fsync(fd: int) -> None:
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if path.is_dir():
                return real(fd)
            name = path.name.split(".")[0] + "." + path.name.split(".")[1]
            with self._lock:
                self._running += 1
                self.most_at_once = max(self.most_at_once, self._running)
                if (path.parent.parent / "new" / name).exists():
                    self.linked_before_sync.append(name)
            try:
                time.sleep(delay)
                if fail is not None and name == fail:
                    raise OSError(errno.EIO, "I/O error")
                real(fd)
                self.synced.append(name)
            finally:
                with self._lock:
                    self._running -= 1

        monkeypatch.setattr(os, "fsync", fsync)


def test_a_batchs_files_are_synced_together_and_linked_only_once_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MaildirDelivery("archive", tmp_path)
    items = [_item("bob@acme.example", f"k{i}") for i in range(12)]
    fsyncs = _FileFsyncs(monkeypatch, delay=0.05)
    assert target.deliver_batch(items, lambda _: None) == [None] * 12
    target.close()
    assert fsyncs.most_at_once >= 4  # one after another: 1
    assert fsyncs.linked_before_sync == []
    new = {p.name for p in (tmp_path / "bob@acme.example" / "new").iterdir()}
    assert new == {message_filename(f"k{i}") for i in range(12)} == set(fsyncs.synced)
    assert list((tmp_path / "bob@acme.example" / "tmp").iterdir()) == []


def test_a_file_that_cannot_be_synced_fails_alone_and_is_not_linked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MaildirDelivery("archive", tmp_path)
    items = [_item("bob@acme.example", f"k{i}") for i in range(5)]
    _FileFsyncs(monkeypatch, fail=message_filename("k2"))
    outcomes = target.deliver_batch(items, lambda _: None)
    target.close()
    assert isinstance(outcomes[2], TransientError) and outcomes[2].reason_code == "io-error"
    assert outcomes[:2] + outcomes[3:] == [None] * 4
    new = {p.name for p in (tmp_path / "bob@acme.example" / "new").iterdir()}
    assert new == {message_filename(f"k{i}") for i in (0, 1, 3, 4)}
    assert list((tmp_path / "bob@acme.example" / "tmp").iterdir()) == []
