"""Reading mbox, Maildir and .eml batches, including damaged ones."""

from __future__ import annotations

import io
import os
from pathlib import Path

from mailferry.batch_sources import BatchMessage, BatchProblem, read_eml, read_maildir, read_mbox

MBOX = (
    b"From alice@example.org Mon Nov  2 10:00:00 2026\n"
    b"Message-ID: <1@x>\nSubject: one\n\nFrom here on the body says hello\n\n"
    b"From bob@example.org Mon Nov  2 11:00:00 2026\r\n"
    b"Message-ID: <2@x>\r\nSubject: two\r\n\r\nbody\r\n>From quoted\r\n\r\n"
    b"From carol@example.org Mon Nov  2 12:00:00 2026\n"
    b"Message-ID: <3@x>\nSubject: three\n\nlast line without newline"
)


def messages(items: list[BatchMessage | BatchProblem]) -> list[BatchMessage]:
    return [i for i in items if isinstance(i, BatchMessage)]


def test_mbox_splits_only_on_real_separators_and_normalises_line_endings() -> None:
    found = messages(list(read_mbox(io.BytesIO(MBOX))))
    assert [m.data.split(b"\r\n")[0] for m in found] == [
        b"Message-ID: <1@x>",
        b"Message-ID: <2@x>",
        b"Message-ID: <3@x>",
    ]
    assert found[0].data.endswith(b"\r\n\r\nFrom here on the body says hello\r\n")
    assert b"\r\nFrom quoted\r\n" in found[1].data  # mboxrd un-escaping
    assert all(b"\n" not in m.data.replace(b"\r\n", b"") for m in found)


def test_truncated_last_message_is_imported_with_a_warning() -> None:
    found = messages(list(read_mbox(io.BytesIO(MBOX))))
    assert found[2].warnings == ["the file ends inside this message: it may be truncated"]
    assert found[2].data.endswith(b"last line without newline\r\n")
    assert found[0].warnings == [] and found[1].warnings == []


def test_garbage_before_the_first_separator_is_reported() -> None:
    items = list(read_mbox(io.BytesIO(b"not an mbox line\n" + MBOX)))
    problems = [i for i in items if isinstance(i, BatchProblem)]
    assert [p.reason for p in problems] == ["17 bytes before the first From_ line were not imported"]
    assert len(messages(items)) == 3


def test_body_line_starting_with_from_after_blank_needs_a_from_line_shape() -> None:
    text = b"From a@x Mon Nov  2 10:00:00 2026\nSubject: s\n\nFrom now on\n"
    assert len(messages(list(read_mbox(io.BytesIO(text))))) == 1


def test_mbox_resumes_at_a_checkpoint() -> None:
    first = messages(list(read_mbox(io.BytesIO(MBOX))))
    resumed = messages(list(read_mbox(io.BytesIO(MBOX), start=int(first[0].resume_after))))
    assert [m.data for m in resumed] == [m.data for m in first[1:]]


def test_maildir_reports_unreadable_files_and_reads_the_rest(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cur" / "1.host:2,S").write_bytes(b"Subject: a\n\nA\n")
    (tmp_path / "new" / "2.host").write_bytes(b"Subject: b\n\nB\n")
    os.symlink(tmp_path / "gone", tmp_path / "new" / "3.host")
    items = list(read_maildir(tmp_path))
    assert [m.data for m in messages(items)] == [b"Subject: a\r\n\r\nA\r\n", b"Subject: b\r\n\r\nB\r\n"]
    problems = [i for i in items if isinstance(i, BatchProblem)]
    assert [(p.position, p.reason) for p in problems] == [
        ("maildir:new/3.host", "unreadable: No such file or directory")
    ]
    after_first = messages(list(read_maildir(tmp_path, after="cur/1.host:2,S")))
    assert len(after_first) == 1


def test_not_a_maildir(tmp_path: Path) -> None:
    (problem,) = list(read_maildir(tmp_path))
    assert isinstance(problem, BatchProblem) and "not a Maildir" in problem.reason


def test_eml_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "b.eml").write_bytes(b"Subject: b\n\nB\n")
    (tmp_path / "a.eml").write_bytes(b"Subject: a\n\nA\n")
    single = tmp_path / "single.txt"
    single.write_bytes(b"Subject: s\n\nS\n")
    found = messages(list(read_eml([tmp_path, single])))
    assert [m.data.split(b"\r\n")[0] for m in found] == [b"Subject: a", b"Subject: b", b"Subject: s"]
    assert [m.data for m in messages(list(read_eml([tmp_path, single], after=2)))] == [found[2].data]
