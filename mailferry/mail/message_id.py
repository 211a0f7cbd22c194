"""The Message-ID in its one canonical form, used by dedup keys, audit events and lookups.

Canonical form: ``<local@domain>``, angle brackets kept, the domain lower-cased, the local
part exactly as written (RFC 5322 makes it case-sensitive: two ids differing in the case of
the local part may be two messages). It is the form the stream's dedup keys always had, so
dedup table entries and ``mailferry.deliver`` records written before this module keep
matching. The fetch stage used to write ``local@domain`` lower-cased into its audit events
(so one message had two audit keys); ``lookup_key`` still finds those events.

Comments, folding and a missing pair of angle brackets are tolerated; anything else is not
an id and counts as absent (dedup then uses the content hash). Scanned with one pattern
whose single quantifier stops at the next ``<``, ``>`` or space (the pattern it replaces
could backtrack quadratically on ``<@@@@…``).
"""

from __future__ import annotations

import re

from mailferry.mail.encoded_words import bytes_as_text

MAX_MESSAGE_ID = 998
_BRACKETED = re.compile(r"<([^<>\s]*)>")
_BARE_EXCLUDED = frozenset("<>")


def _split(candidate: str) -> tuple[str, str] | None:
    """(local, domain) when ``candidate`` has an ``@`` with text on both sides."""
    at = candidate.find("@", 1)
    if at < 0 or at > len(candidate) - 2:
        return None
    local, _, domain = candidate.rpartition("@")
    return local, domain


def normalise_message_id(value: str | None) -> str | None:
    """The canonical ``<local@domain>`` of a Message-ID header value, or None."""
    if not value:
        return None
    text = value.strip()
    parts: tuple[str, str] | None = None
    whole = ""
    for match in _BRACKETED.finditer(text):
        parts = _split(match.group(1))
        if parts is not None:
            whole = match.group(1)
            break
    if parts is None:
        if text.count("@") != 1 or any(c in _BARE_EXCLUDED or c.isspace() for c in text):
            return None
        parts, whole = _split(text), text
        if parts is None:
            return None
    local, domain = parts
    if not local or not domain or len(whole) > MAX_MESSAGE_ID:
        return None
    return f"<{local}@{domain.lower()}>"


def lookup_key(value: str) -> str:
    """The case-free form a person's query and an audit event's id are compared in.

    A look-up, not a key: the audit index files events under it and ``audit trace`` asks
    with it, so an id typed in another case is still found, and so are the fetch stage's
    events of before this module (``local@domain`` lower-cased: exactly this form, so the
    index built from them stays valid). Text that is no id is only stripped and lower-cased.
    """
    canonical = normalise_message_id(value)
    text = canonical[1:-1] if canonical is not None else value.strip().strip("<>").strip()
    return text.lower()


def message_id_field(block: bytes) -> str | None:
    """The raw value of the first Message-ID field of a header block, unfolded.

    For the fetcher, which needs only this one field of every message it reads: a scan for
    the field name at line starts instead of the email parser (about 0.3 ms per message, a
    fifth of a fetch's CPU). Linear: one ``find`` per candidate line start.
    """
    lowered = block.lower()
    start = 0 if lowered.startswith(b"message-id:") else -1
    if start < 0:
        found = lowered.find(b"\nmessage-id:")
        if found < 0:
            return None
        start = found + 1
    position = start + len(b"message-id:")
    lines = []
    while True:
        end = block.find(b"\n", position)
        line = block[position : len(block) if end < 0 else end]
        lines.append(line)
        if end < 0 or block[end + 1 : end + 2] not in (b" ", b"\t"):
            break
        position = end + 1
    raw = b" ".join(b" ".join(lines).split())
    return bytes_as_text(raw) if raw else None
