"""Secret values in the configuration: references that are resolved only where a connection needs them.

A secret is written in the config as ``env:NAME`` or ``file:/path``; a clear-text value only where
the file sets ``allow_plaintext_secrets = true`` (demos and tests). Whatever the form, the value
never leaves the process: ``repr``/``str``/serialisation show the reference (``plain:***`` for a
clear-text value), validation errors never echo the input, and the ``mailboxes`` topic carries
references only (``mailferry.producers.mailboxes``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from mailferry import redact

PLAINTEXT_REFERENCE = "plain:***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,31}):")
# Schemes of secret stores and helpers people write by habit. Naming only these (and any
# ``scheme://``) keeps a clear-text password that happens to contain a colon from being
# echoed back, in part, as a "scheme".
_FOREIGN_SCHEMES = frozenset(
    {
        "env",
        "file",
        "config",
        "plain",
        "literal",
        "base64",
        "vault",
        "op",
        "1password",
        "bitwarden",
        "bws",
        "lastpass",
        "pass",
        "keyring",
        "sops",
        "aws-sm",
        "awssm",
        "aws-secretsmanager",
        "secretsmanager",
        "ssm",
        "kms",
        "gcp-sm",
        "gcpsm",
        "gcp-secretmanager",
        "azure-kv",
        "azurekv",
        "keyvault",
        "akv",
        "k8s",
        "kubernetes",
        "secret",
        "secrets",
        "doppler",
        "infisical",
        "conjur",
        "cmd",
        "exec",
        "command",
    }
)


class SecretRef:
    """A secret named by reference: ``env:NAME`` or ``file:/path`` (or a permitted clear text).

    The reference is all that ``repr``, ``str``, ``format`` and pydantic serialisation show;
    the value is read by ``reveal`` only when a connection needs it.
    """

    __slots__ = ("_plain", "reference")

    def __init__(self, reference: str, *, plain: str | None = None) -> None:
        self.reference = reference
        self._plain = plain

    @classmethod
    def plaintext(cls, value: str) -> SecretRef:
        return cls(PLAINTEXT_REFERENCE, plain=value)

    @property
    def is_plaintext(self) -> bool:
        return self._plain is not None

    def reveal(self) -> str:
        """Read the secret now; raises ``ConfigError`` (naming the reference only) when it is not there."""
        value = self._plain if self._plain is not None else self._read()
        redact.register(value)  # from now on cut out of this process's logs, whoever logs it
        return value

    def _read(self) -> str:
        from mailferry.errors import ConfigError

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
        raise ConfigError(f"secret {self.reference}: not resolvable in this process")

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
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: s.reference),
        )


def _validate_secret(value: Any, info: ValidationInfo) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str) or not value:
        raise PydanticCustomError("secret", "expected a secret reference such as 'env:NAME'")
    context = info.context or {}
    match = _SCHEME.match(value)
    scheme = match.group(1) if match else None
    if scheme in ("env", "file"):
        if not value[len(scheme) + 1 :]:
            raise PydanticCustomError(
                "secret_reference",
                "'{scheme}:' names nothing: use 'env:NAME' or 'file:/path'",
                {"scheme": scheme},
            )
        secret = SecretRef(value)
        if context.get("check_secrets", False):
            from mailferry.errors import ConfigError

            try:
                secret.reveal()
            except ConfigError as exc:
                raise PydanticCustomError("secret_missing", "{msg}", {"msg": str(exc)}) from None
        return secret
    if scheme is not None and (
        scheme.lower() in _FOREIGN_SCHEMES or value[len(scheme) + 1 :].startswith("//")
    ):
        raise PydanticCustomError(
            "secret_scheme",
            "unknown secret scheme '{scheme}:': mailferry reads 'env:NAME' and 'file:/path' references",
            {"scheme": scheme},
        )
    if context.get("allow_plaintext_secrets", False):
        return SecretRef.plaintext(value)
    raise PydanticCustomError(
        "secret_plaintext",
        "clear-text secret refused: use 'env:NAME' or 'file:/path', or set "
        "allow_plaintext_secrets = true at the top of the file",
    )
