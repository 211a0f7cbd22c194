"""Log output of a role: the usual text lines, or one JSON object per line for log collectors.

JSON is chosen by ``--log-format json`` or ``[logging] format = "json"``; the record passes
through the redaction of ``mailferry.redact`` first like every other record (the record
factory runs before any formatter).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mailferry.config.models import MailferryConfig

LogFormat = Literal["text", "json"]
ENV = "MAILFERRY_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def chosen(config: MailferryConfig) -> LogFormat:
    """``--log-format`` (which sets ``MAILFERRY_LOG_FORMAT`` for child roles too), else the config."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted in ("text", "json"):
        return wanted  # type: ignore[return-value]
    return config.logging.format


def apply(role: str, log_format: LogFormat) -> None:
    """Switch the handlers a role already set up to JSON (its level and targets stay)."""
    if log_format != "json":
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter(role))


def dict_config(role: str, log_format: LogFormat, level: int) -> dict[str, Any] | None:
    """The ``logging.config`` dict for Faust's worker (which replaces the root handlers); None: its own."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "role": role}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json", "level": level}},
        "root": {"level": level, "handlers": ["default"]},
    }
