"""Value types shared by the configuration models: durations, sizes, secret references."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from pydantic_core import PydanticCustomError

from mailferry.config.secrets import SecretRef

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    None: 1,
}


def parse_duration(value: Any) -> timedelta:
    """Accept ``"90s"``, ``"10m"``, ``"3d"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise PydanticCustomError("duration", "expected a duration such as '30s', '10m', '3d'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise PydanticCustomError(
        "duration",
        "expected a duration such as '30s', '10m', '3d', got {value}",
        {"value": repr(value)},
    )


def parse_size(value: Any) -> int:
    """Accept ``"25MiB"``, ``"512kb"`` or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = match.group(2).lower() if match.group(2) else None
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise PydanticCustomError(
        "size",
        "expected a size such as '512KiB', '25MB' or bytes, got {value}",
        {"value": repr(value)},
    )


def _format_duration(value: timedelta) -> str:
    """The largest whole unit, so that a dumped config reads back (``'%g'`` wrote ``2.592e+06s``)."""
    millis = round(value / timedelta(milliseconds=1))
    for unit in ("w", "d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if millis and millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(_format_duration, return_type=str)
]
ByteSize = Annotated[int, BeforeValidator(parse_size)]


__all__ = ["ByteSize", "Duration", "SecretRef", "parse_duration", "parse_size"]
