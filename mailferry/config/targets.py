"""Delivery targets: where resolved mail is written (EWS, Graph, SMTP, Maildir)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mailferry.config.kafka import Strict
from mailferry.config.types import ByteSize, Duration, SecretRef
from mailferry.config.urls import CredentialUrl


class TargetBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    concurrency: int = Field(8, ge=1, description="parallel deliveries for this target")
    timeout: Duration = timedelta(seconds=120)
    max_message_size: ByteSize | None = None


class EwsTarget(TargetBase):
    kind: Literal["ews"]
    endpoint: CredentialUrl | None = Field(None, description="EWS URL; None: autodiscover once")
    version: str | None = Field(None, description="e.g. 'Exchange2016'; None: detected once")
    auth: Literal["basic", "ntlm", "oauth2"] = "ntlm"
    username: str | None = None
    password: SecretRef | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretRef | None = None
    token_url: CredentialUrl | None = None
    impersonation: bool = True
    ca_file: Path | None = None
    verify_tls: bool = True
    stream_threshold: ByteSize = Field(
        1024 * 1024, ge=0, description="messages larger than this stream their MIME (bounded memory)"
    )


class GraphTarget(TargetBase):
    kind: Literal["graph"]
    mode: Literal["import-mime", "json"] = "import-mime"
    base_url: CredentialUrl = "https://graph.microsoft.com"
    token_url: CredentialUrl | None = None
    tenant_id: str
    client_id: str
    client_secret: SecretRef
    concurrency: int = Field(4, ge=1, le=4, description="Graph allows 4 concurrent per mailbox")


class SmtpTarget(TargetBase):
    kind: Literal["smtp"]
    host: str
    port: int = Field(25, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    ca_file: Path | None = None
    username: str | None = None
    password: SecretRef | None = None
    allow_plaintext_login: bool = Field(False, description="allow a password over tls = 'none' (tests only)")
    mail_from: str | None = Field(None, description="envelope sender; None keeps the message's")

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> SmtpTarget:
        if self.tls == "none" and (self.username or self.password) and not self.allow_plaintext_login:
            raise ValueError(
                "tls = 'none' would send the password in clear; set allow_plaintext_login = true "
                "to accept that"
            )
        return self


class MaildirTarget(TargetBase):
    kind: Literal["maildir"]
    path: Path


Target = Annotated[EwsTarget | GraphTarget | SmtpTarget | MaildirTarget, Field(discriminator="kind")]
