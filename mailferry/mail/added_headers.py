"""The header fields mailferry prepends to a delivered message, written in one place.

The trace header and rule ``add-header`` fields travel in the delivery record as (name,
value) pairs; every target that writes bytes (SMTP DATA, the EWS MIME upload, Maildir
files, Graph ``importMime``) prepends them through ``prefix``. Values may come from a
tenant's config or a topic record, so nothing in them may start a new header field or end
the block: CR, LF and NUL become spaces (a lone surrogate becomes ``?``), and a name that
is not a field name (RFC 5322 printable ASCII without ``:``) is dropped rather than written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")  # printable ASCII except ':'
_BREAKS = str.maketrans({"\r": " ", "\n": " ", "\x00": " "})


def field_line(name: str, value: str) -> bytes | None:
    """``name: value\\r\\n`` as UTF-8, or None when ``name`` cannot be a header field name."""
    if not _FIELD_NAME.fullmatch(name):
        return None
    return f"{name}: {value.translate(_BREAKS)}\r\n".encode("utf-8", "replace")  # lone surrogates


def prefix(fields: Iterable[tuple[str, str]]) -> bytes:
    """The bytes to put in front of the message for ``fields``, in order."""
    return b"".join(line for name, value in fields if (line := field_line(name, value)) is not None)


def prefix_size(fields: Iterable[tuple[str, str]]) -> int:
    return len(prefix(fields))
