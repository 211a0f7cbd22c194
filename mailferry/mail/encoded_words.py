"""One header value as text: unfolded, 8-bit bytes read, RFC 2047 encoded words decoded.

Written by hand rather than with ``email.header.decode_header`` because that function is
quadratic (its pattern scans to the end of the line from every ``=?``: 1 MiB of ``=?a?q?``
costs 4.3 s) and ``make_header`` raises on any charset Python knows but mail does not use
(``punycode``/``idna`` raise ``UnicodeError`` with any error handler; ``unicode_escape``
parses escapes). Here a word is found by one pattern whose only quantifiers are bounded by
the next ``?``, each character is looked at a fixed number of times, and only charsets in
Python's own alias table (minus the non-mail codecs below) are ever looked up, so an
attacker cannot grow the codec cache with made-up names either.

Damage is never fatal: a word that does not decode stays as written, an unknown charset is
read as UTF-8 or else Latin-1, and the caller gets a defect kind to put on the audit record.
"""

from __future__ import annotations

import binascii
import codecs
import encodings
import encodings.aliases
import re
from functools import cache

_FOLD = re.compile(r"\r?\n[ \t]*")
_ESCAPED = re.compile("[\udc80-\udcff]")  # 8-bit bytes as the parser's surrogate escapes
# charset (RFC 2231 language allowed), encoding, text; every quantifier stops at the next '?'
_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")
_NOT_MAIL_CHARSETS = frozenset(
    {"punycode", "idna", "raw-unicode-escape", "unicode-escape", "undefined", "charmap"}
)
_KNOWN_NAMES = frozenset(
    name.lower() for name in (*encodings.aliases.aliases, *encodings.aliases.aliases.values())
)
_DECODE_ERRORS = (LookupError, UnicodeError, ValueError, TypeError)


def bytes_as_text(data: bytes) -> str:
    """8-bit header bytes as text: UTF-8 when they are, else Latin-1 (never fails)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _as_bytes(text: str) -> bytes:
    """``text`` as UTF-8, the parser's surrogate escapes back as their bytes; any other lone
    surrogate (never from the parser, but this is a public function) becomes ``?``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _text(raw: str) -> str:
    """A value from the parser, its surrogate-escaped 8-bit bytes read as ``bytes_as_text``."""
    if raw.isascii() or _ESCAPED.search(raw) is None:
        return raw
    return bytes_as_text(_as_bytes(raw))


@cache  # keys are drawn from _KNOWN_NAMES only, so the cache is bounded
def _codec_of(known_name: str) -> str | None:
    try:
        info = codecs.lookup(known_name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def codec_for(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or None when mail should not use it."""
    name = encodings.normalize_encoding(charset.partition("*")[0].strip().lower())
    if name not in _KNOWN_NAMES:
        return None
    return _codec_of(name)


def decode_bytes(data: bytes, charset: str) -> tuple[str, bool]:
    """(text, clean): ``data`` in ``charset``; unknown charsets and bad bytes are not clean."""
    codec = codec_for(charset)
    if codec is None:
        return bytes_as_text(data), False
    try:
        return data.decode(codec), True
    except _DECODE_ERRORS:
        pass
    try:
        return data.decode(codec, "replace"), False
    except _DECODE_ERRORS:
        return bytes_as_text(data), False


def _payload(encoding: str, text: str) -> bytes | None:
    data = _as_bytes(text)
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = b"".join(data.split())
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def _decode_words(value: str) -> tuple[str, bool]:
    out: list[str] = []
    clean = True
    pending: list[bytes] = []  # adjacent words in one charset, decoded together (split characters)
    pending_charset = ""
    position = 0

    def flush() -> None:
        nonlocal clean
        if pending:
            text, ok = decode_bytes(b"".join(pending), pending_charset)
            out.append(text)
            clean = clean and ok
            pending.clear()

    previous_decoded = False
    for match in _WORD.finditer(value):
        between = value[position : match.start()]
        payload = _payload(match.group(2), match.group(3))
        joins = previous_decoded and not between.strip()
        if payload is None:
            flush()
            out.append(between + match.group(0))
            clean = previous_decoded = False
        else:
            charset = match.group(1)
            if not joins or charset.lower() != pending_charset.lower():
                flush()
            if not joins:
                out.append(between)
            pending.append(payload)
            pending_charset = charset
            previous_decoded = True
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out), clean


def decode_value(raw: str) -> tuple[str, bool]:
    """(text, clean) of one raw header value; ``clean`` is False when part of it was damaged.

    Whitespace between two encoded words disappears (RFC 2047 section 6.2); everything
    else between them stays.
    """
    value = _FOLD.sub(" ", _text(raw)).strip()
    if "=?" not in value:
        return value, True
    return _decode_words(value)
