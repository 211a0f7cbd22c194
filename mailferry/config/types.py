"""Value types shared by the configuration models: durations, sizes, secret references."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

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


class SecretRef:
    """A secret named by reference: ``env:NAME`` or ``file:/path``.

    The reference is what gets written to Kafka and logs; the value is read only when
    a connection needs it. A clear-text value is accepted only where the config file
    sets ``allow_plaintext_secrets = true`` (for demos and tests), and even then it is
    never shown by ``repr``.
    """

    __slots__ = ("_plain", "reference")

    def __init__(self, reference: str, *, plain: str | None = None) -> None:
        self.reference = reference
        self._plain = plain

    @classmethod
    def plaintext(cls, value: str) -> SecretRef:
        return cls("plain:***", plain=value)

    @property
    def is_plaintext(self) -> bool:
        return self._plain is not None

    def reveal(self) -> str:
        """Read the secret now; raises ``ConfigError`` when it is not there."""
        from mailferry.errors import ConfigError

        if self._plain is not None:
            return self._plain
        kind, _, name = self.reference.partition(":")
        if kind == "env":
            value = os.environ.get(name)
            if value is None:
                raise ConfigError(f"secret {self.reference}: environment variable {name} is not set")
            return value
        if kind == "file":
            try:
                return Path(name).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"secret {self.reference}: {exc.strerror}") from exc
        raise ConfigError(f"secret reference {self.reference!r} is neither env: nor file:")

    def to_wire(self) -> str:
        """What may leave the process: the reference, or a clear-text value only when allowed."""
        return self._plain if self._plain is not None else self.reference

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and (self.reference, self._plain) == (
            other.reference,
            other._plain,
        )

    def __hash__(self) -> int:
        return hash(self.reference)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            _validate_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: s.reference if not s.is_plaintext else "plain:***"
            ),
        )


def _validate_secret(value: Any, info: ValidationInfo) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("secret", "expected a secret reference such as 'env:NAME'")
    context = info.context or {}
    kind, sep, name = value.partition(":")
    if sep and kind in ("env", "file") and name:
        secret = SecretRef(value)
        if context.get("check_secrets", False):
            from mailferry.errors import ConfigError

            try:
                secret.reveal()
            except ConfigError as exc:
                raise PydanticCustomError("secret_missing", "{msg}", {"msg": str(exc)}) from None
        return secret
    if context.get("allow_plaintext_secrets", False):
        return SecretRef.plaintext(value)
    raise PydanticCustomError(
        "secret_plaintext",
        "clear-text secret refused: use 'env:NAME' or 'file:/path', or set "
        "allow_plaintext_secrets = true at the top of the file",
    )
