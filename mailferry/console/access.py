"""Who may use the console: the bind rule, the login check and the CSRF token.

Kept free of HTTP so the rules can be read (and tested) on their own.
"""

from __future__ import annotations

import getpass
import hmac
import ipaddress
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailferry.config.console import ConsoleConfig
from mailferry.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True only when every address ``host`` names is a loopback one (``localhost`` included)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


@dataclass(frozen=True)
class Gate:
    """The console's login rule; ``required`` is False only for a loopback bind with no secret."""

    config: ConsoleConfig
    required: bool

    @classmethod
    def for_bind(cls, config: ConsoleConfig, host: str) -> Gate:
        """Refuses (``ConfigError``) a bind beyond loopback when no secret is configured."""
        configured = config.token is not None or config.password_hash is not None
        if not configured and not is_loopback(host):
            raise ConfigError(
                f"console: binding {host} (not loopback) needs console.token or console.password_hash "
                "in the config; without them the console listens on 127.0.0.1 only"
            )
        for secret in (config.token, config.password_hash):
            if secret is not None:
                secret.reveal()  # a missing secret stops the start, naming its reference
        return cls(config, required=configured)

    def local_actor(self) -> str:
        """The actor audited when no login is asked: the OS user running the console."""
        return f"console:{getpass.getuser()}"

    def login(self, secret: str) -> str | None:
        """The actor for a correct token or password, else None."""
        if not secret:
            return None
        if self.config.token is not None and hmac.compare_digest(
            secret.encode(), self.config.token.reveal().encode()
        ):
            return f"console:{self.config.user}"
        if self.config.password_hash is not None:
            try:
                PasswordHasher().verify(self.config.password_hash.reveal(), secret)
            except (VerificationError, InvalidHashError):
                return None
            return f"console:{self.config.user}"
        return None


@dataclass
class LoginThrottle:
    """Failed logins per client address: after ``limit`` failures within ``window`` seconds that
    client is refused until the oldest of them ages out, so a password cannot be guessed at the
    speed of HTTP. Written here because it is a dozen lines over a dict, kept in memory: a
    restart forgets it, which costs a guesser a restart of the console per ``limit`` tries."""

    limit: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def _recent(self, client: str) -> list[float]:
        now = self.clock()
        recent = [at for at in self._failures.get(client, []) if now - at < self.window]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return recent

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        recent = self._recent(client)
        if len(recent) < self.limit:
            return None
        return max(recent[0] + self.window - self.clock(), 0.0)

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, []).append(self.clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: object, given: object) -> bool:
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(expected.encode(), given.encode())
    )
