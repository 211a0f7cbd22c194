"""Delivery targets: where resolved mail is written (EWS, Graph, SMTP, Maildir)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mailferry.config.kafka import Strict
from mailferry.config.types import ByteSize, Duration, SecretRef
from mailferry.config.urls import CredentialUrl


class TargetBase(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    concurrency: int = Field(8, ge=1, description="parallel deliveries for this target")
    timeout: Duration = timedelta(seconds=120)
    max_message_size: ByteSize | None = None


class EntraApp(Strict):
    """How an app registration proves itself to Microsoft Entra ID (``mailferry.exchange.oauth``)."""

    client_secret: SecretRef | None = None
    client_certificate: SecretRef | None = Field(
        None, description="PEM: the private key, with the certificate or client_certificate_thumbprint"
    )
    client_certificate_thumbprint: str | None = Field(None, description="SHA-1 hex, as the portal shows")
    authority: CredentialUrl | None = Field(
        None, description="default https://login.microsoftonline.com/<tenant_id>"
    )
    token_url: CredentialUrl | None = Field(None, description="deprecated: its authority is used")

    @field_validator("client_certificate")
    @classmethod
    def _not_both(cls, value: SecretRef | None, info: ValidationInfo) -> SecretRef | None:
        if value is not None and info.data.get("client_secret") is not None:
            raise ValueError("set client_secret or client_certificate, not both")
        return value

    @field_validator("client_certificate_thumbprint")
    @classmethod
    def _sha1_hex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cleaned = value.replace(":", "").replace(" ", "").upper()
        if len(cleaned) != 40 or any(c not in "0123456789ABCDEF" for c in cleaned):
            raise ValueError("expected the certificate's SHA-1 thumbprint: 40 hex digits")
        return cleaned

    def app_problem(self) -> str | None:
        if self.client_secret is None and self.client_certificate is None:
            return "an app registration needs client_secret or client_certificate"
        return None


class EwsTarget(TargetBase, EntraApp):
    kind: Literal["ews"]
    endpoint: CredentialUrl | None = Field(None, description="EWS URL; None: autodiscover once")
    version: str | None = Field(None, description="e.g. 'Exchange2016'; None: detected once")
    auth: Literal["basic", "ntlm", "oauth2"] = "ntlm"
    username: str | None = None
    password: SecretRef | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    impersonation: bool = True
    ca_file: Path | None = None
    verify_tls: bool = True
    stream_threshold: ByteSize = Field(
        1024 * 1024, ge=0, description="messages larger than this stream their MIME (bounded memory)"
    )

    @model_validator(mode="after")
    def _oauth2_app(self) -> EwsTarget:
        if self.auth == "oauth2":
            if not (self.tenant_id and self.client_id):
                raise ValueError("auth = 'oauth2' needs tenant_id and client_id")
            problem = self.app_problem()
            if problem:
                raise ValueError(f"auth = 'oauth2': {problem}")
        return self


class GraphTarget(TargetBase, EntraApp):
    kind: Literal["graph"]
    mode: Literal["import-mime", "json"] = "import-mime"
    base_url: CredentialUrl = "https://graph.microsoft.com"
    tenant_id: str
    client_id: str
    ca_file: Path | None = Field(None, description="extra CA bundle for Graph and the authority")
    concurrency: int = Field(4, ge=1, le=4, description="Graph allows 4 concurrent per mailbox")

    @model_validator(mode="after")
    def _app(self) -> GraphTarget:
        problem = self.app_problem()
        if problem:
            raise ValueError(problem)
        return self


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
