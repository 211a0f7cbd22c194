"""Secret values are cut out of every log record this process writes, whatever logger wrote it.

mailferry's own messages never hold a secret, but libraries do at DEBUG level: exchangelib logs
request headers (``Authorization: Basic`` = base64 of ``user:password``), requests-oauthlib the
token request body (``client_secret=…``). Every value a ``SecretRef`` reveals is registered here
with its URL-encoded and base64 forms (at each of the three byte alignments, so it is found
inside ``base64(user:password)`` too), and a log record factory replaces them with ``***``
before any handler sees the record. Values shorter than ``MIN_LENGTH`` are not registered:
cutting two letters out of every log line would hide more than it protects. OAuth access
tokens, which libraries fetch themselves, are masked by their shape (``Bearer …``,
``access_token …``).
"""

from __future__ import annotations

import base64
import logging
import math
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 6
MASK = "***"

_TOKENS = re.compile(
    r"""(\bBearer\s+|["']?\b(?:access|refresh|id)_token["']?\s*[:=]\s*["']?)[A-Za-z0-9._~+/-]+=*""",
    re.IGNORECASE,
)
_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None
_installed = False


def _base64_forms(value: bytes) -> set[str]:
    """The base64 characters that depend only on ``value``, for each alignment it may have."""
    forms = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + value).decode()
            start = math.ceil(offset * 8 / 6)
            end = (offset + len(value)) * 8 // 6
            forms.add(text[start:end])
    return {form for form in forms if len(form) >= 8}


def forms_of(value: str) -> set[str]:
    """Every way ``value`` may appear in a log line."""
    raw = value.encode("utf-8")
    return {value, quote(value, safe=""), quote_plus(value)} | _base64_forms(raw)


def register(value: str) -> None:
    """Redact ``value`` (and its encodings) from this process's logs from now on."""
    global _pattern
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        new = forms_of(value) - _forms
        if not new:
            return
        _forms.update(new)
        ordered = sorted(_forms, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(form) for form in ordered))


def redact(text: str) -> str:
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _TOKENS.sub(lambda m: m.group(1) + MASK, text)


def install() -> None:
    """Route every log record of this process through ``redact`` (once; later calls do nothing)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
