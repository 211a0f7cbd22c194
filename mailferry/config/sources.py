"""Source mailboxes: where mail is fetched from (POP3 or IMAP, personal or global)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mailferry.config.kafka import Strict
from mailferry.config.types import ByteSize, Duration, SecretRef
from mailferry.config.urls import CredentialUrl

DEFAULT_ENVELOPE_HEADERS = (
    "Delivered-To",
    "X-Original-To",
    "Envelope-To",
    "X-Envelope-To",
    "X-RCPT-TO",
    "Received",
)


class PasswordAuth(Strict):
    kind: Literal["password"] = "password"
    password: SecretRef
    apop: bool = Field(False, description="POP3 only: APOP digest instead of USER/PASS")


class OAuth2ClientCredentials(Strict):
    """Token from an OAuth2 token endpoint with the client-credentials grant."""

    kind: Literal["oauth2"] = "oauth2"
    mechanism: Literal["XOAUTH2", "OAUTHBEARER"] = "XOAUTH2"
    token_url: CredentialUrl
    client_id: str
    client_secret: SecretRef
    scope: str = "https://outlook.office365.com/.default"


class OAuth2Command(Strict):
    """Token printed by a command (an existing token helper, a vault CLI)."""

    kind: Literal["oauth2-command"] = "oauth2-command"
    mechanism: Literal["XOAUTH2", "OAUTHBEARER"] = "XOAUTH2"
    command: list[str] = Field(min_length=1)


SourceAuth = Annotated[PasswordAuth | OAuth2ClientCredentials | OAuth2Command, Field(discriminator="kind")]


class SourceBase(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._@+-]+$")
    mode: Literal["personal", "global"]
    host: str
    port: int | None = Field(None, ge=1, le=65535, description="default from the protocol and TLS mode")
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: Path | None = Field(None, description="extra CA bundle; certificates are always verified")
    allow_plaintext_login: bool = Field(
        False, description="allow a password over an unencrypted connection (tests only)"
    )
    username: str
    auth: SourceAuth
    poll_interval: Duration = timedelta(seconds=60)
    timeout: Duration = timedelta(seconds=60)
    max_message_size: ByteSize | None = None
    oversize_action: Literal["skip", "headers-notice"] = "skip"
    max_messages_per_pass: int | None = Field(None, ge=1)
    enabled: bool = True
    delete_when: Literal["acknowledged", "delivered"] = Field(
        "acknowledged",
        description="when a message may leave the source (delete, move): once Kafka acknowledged it, "
        "or only once every recipient the stream resolved has a 'delivered' audit event (the "
        "brief's stricter policy for single-broker deployments)",
    )

    # personal mailboxes
    deliver_to: str | None = Field(None, description="personal: the Exchange mailbox")

    # global (catch-all) mailboxes
    envelope_headers: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVELOPE_HEADERS))
    trusted_occurrence: Literal["first", "last"] | int = Field(
        "first",
        description="which occurrence of an envelope header to trust: the one the provider's "
        "final MTA added is normally the first (topmost)",
    )
    guess_from_headers: bool = Field(False, description="fall back to To/Cc/Resent-* when no envelope")

    @model_validator(mode="after")
    def _mode_fields(self) -> SourceBase:
        if self.mode == "personal" and not self.deliver_to:
            raise ValueError("a personal mailbox needs deliver_to")
        if (
            self.tls == "none"
            and isinstance(self.auth, PasswordAuth)
            and not (self.allow_plaintext_login or self.auth.apop)
        ):
            raise ValueError(
                "tls = 'none' would send the password in clear; set allow_plaintext_login = true "
                "to accept that"
            )
        return self


class Pop3Source(SourceBase):
    kind: Literal["pop3"]
    leave_on_server: bool = False
    delete_after: Duration | None = Field(None, description="with leave_on_server: delete after this age")


class ImapSource(SourceBase):
    kind: Literal["imap"]
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    idle: bool = True
    after_fetch: Literal["delete", "move", "seen", "none"] = "delete"
    move_to: str | None = None

    @model_validator(mode="after")
    def _move_target(self) -> ImapSource:
        if self.after_fetch == "move" and not self.move_to:
            raise ValueError("after_fetch = 'move' needs move_to")
        return self


Source = Annotated[Pop3Source | ImapSource, Field(discriminator="kind")]
