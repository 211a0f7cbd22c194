"""Reading historical batches: mbox, Maildir and single .eml files, one message at a time.

The mbox reader is written by hand: the stdlib ``mailbox.mbox`` indexes the whole file
first and has no notion of a damaged file, while real archives are truncated, carry body
lines starting with "From " and mix line endings. Every message comes out with CRLF line
endings (as POP3 and IMAP hand them over), so an imported copy and a fetched copy of the
same mail hash alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_FROM_LINE = re.compile(rb"^From \S+.*\d{4}\s*$|^From \S+\s*$")
_ESCAPED_FROM = re.compile(rb"^>(>*From )")


@dataclass
class BatchMessage:
    position: str  # where it came from: "mbox@<byte offset>", "maildir:<name>", a path
    data: bytes
    resume_after: int | str  # checkpoint value once this message is durable
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchProblem:
    position: str
    reason: str


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def _finish(lines: list[bytes]) -> bytes:
    while lines and lines[-1].strip() == b"":
        lines.pop()  # the blank line that separates messages belongs to the mbox, not the mail
    body = b"".join(_ESCAPED_FROM.sub(rb"\1", line) for line in lines)
    return to_crlf(body if body.endswith((b"\n", b"\r")) or not body else body + b"\n")


def read_mbox(handle: BinaryIO, *, start: int = 0) -> Iterator[BatchMessage | BatchProblem]:
    """Messages of an mbox from byte ``start`` (a previous run's checkpoint).

    A "From " line only separates messages where it follows a blank line (or starts the
    file) and looks like a From_ line; anything else is body text. Text before the first
    separator is reported, not imported.
    """
    handle.seek(start)
    offset = start
    current: list[bytes] | None = None
    message_start = start
    previous_blank = True
    preamble = 0
    while True:
        line = handle.readline()
        if not line:
            break
        looks_like = _FROM_LINE.match(line.rstrip(b"\r\n")) is not None
        is_separator = looks_like and (previous_blank or current is None)
        if is_separator:
            if current is not None:
                yield _mbox_message(current, message_start, offset)
            current = []
            message_start = offset
        elif current is None:
            preamble += len(line)
        else:
            current.append(line)
        previous_blank = line.strip() == b""
        offset += len(line)
    if preamble and start == 0:
        yield BatchProblem("mbox@0", f"{preamble} bytes before the first From_ line were not imported")
    if current is not None:
        message = _mbox_message(current, message_start, offset)
        if current and not current[-1].endswith((b"\n", b"\r")):
            message.warnings.append("the file ends inside this message: it may be truncated")
        yield message


def _mbox_message(lines: list[bytes], begin: int, end: int) -> BatchMessage:
    return BatchMessage(position=f"mbox@{begin}", data=_finish(lines), resume_after=end)


def read_maildir(root: Path, *, after: str = "") -> Iterator[BatchMessage | BatchProblem]:
    """Messages of a Maildir (cur/ and new/), in name order, after checkpoint ``after``."""
    if not (root / "cur").is_dir() and not (root / "new").is_dir():
        yield BatchProblem(str(root), "not a Maildir: it has neither cur/ nor new/")
        return
    names = sorted(
        f"{sub}/{entry.name}"
        for sub in ("cur", "new")
        if (root / sub).is_dir()
        for entry in (root / sub).iterdir()
        if not entry.name.startswith(".")
    )
    for name in names:
        if name <= after:
            continue
        try:
            data = (root / name).read_bytes()
        except OSError as exc:
            yield BatchProblem(f"maildir:{name}", f"unreadable: {exc.strerror}")
            continue
        yield BatchMessage(position=f"maildir:{name}", data=to_crlf(data), resume_after=name)


def read_eml(paths: list[Path], *, after: int = 0) -> Iterator[BatchMessage | BatchProblem]:
    """Single-message files; a folder stands for the .eml files in it, in name order.
    ``after`` counts the files a previous run already imported."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.eml")) if path.is_dir() else [path]
    for index, file in enumerate(files, start=1):
        if index <= after:
            continue
        try:
            data = file.read_bytes()
        except OSError as exc:
            yield BatchProblem(str(file), f"unreadable: {exc.strerror}")
            continue
        yield BatchMessage(position=str(file), data=to_crlf(data), resume_after=index)
