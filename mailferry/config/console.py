"""The ``[console]`` section: where the web console listens and who may use it."""

from __future__ import annotations

from pydantic import Field

from mailferry.config.kafka import Strict
from mailferry.config.types import SecretRef


class ConsoleConfig(Strict):
    """Without ``token`` or ``password_hash`` the console serves loopback only: anyone who can
    reach 127.0.0.1 already has this machine's Kafka access. Any other bind needs one of them."""

    host: str = "127.0.0.1"
    port: int = Field(8025, ge=0, le=65535)
    user: str = Field("admin", pattern=r"^[A-Za-z0-9._@-]+$", description="named in the audit as the actor")
    token: SecretRef | None = Field(None, description="a shared secret typed at the login page")
    password_hash: SecretRef | None = Field(None, description="an argon2 hash (argon2-cffi) of the password")
    refresh_seconds: int = Field(15, ge=2, description="how often the pages reload themselves")
    throughput_minutes: int = Field(60, ge=5, le=24 * 60, description="span of the throughput chart")
