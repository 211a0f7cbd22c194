"""XOAUTH2 and OAUTHBEARER against a real Dovecot that checks tokens with a loopback OAuth2 server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig
from mailferry.config.sources import ImapSource, Pop3Source
from mailferry.errors import CredentialsError
from mailferry.producers.imap_fetch import imap_pass
from mailferry.producers.pop3_fetch import pop3_pass
from mailferry.producers.state import MailboxState
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import make_config, make_context, sample
from tests.fetch.oauth_server import OAuthServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def oauth_dovecot(tmp_path_factory: pytest.TempPathFactory, oauth: OAuthServer) -> Iterator[DovecotServer]:
    server = DovecotServer(
        Path(tmp_path_factory.mktemp("dovecot-oauth")), oauth2_introspection_url=f"{oauth.url}/introspect"
    ).start()
    yield server
    server.remove()


def _toml(dovecot: DovecotServer, kind: str, user: str, auth: str) -> str:
    port = dovecot.imaps_port if kind == "imap" else dovecot.pop3s_port
    personal = (
        'mode = "personal"\ndeliver_to = "alice@acme.example"\n' if kind == "pop3" else 'mode = "global"\n'
    )
    return (
        f'[[tenants.sources]]\nid = "{user}"\nkind = "{kind}"\n{personal}host = "127.0.0.1"\n'
        f'port = {port}\ntls = "implicit"\nca_file = "{dovecot.ca_file}"\n'
        f'username = "{user}"\nauth = {auth}\n'
    )


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_imap_sasl_with_client_credentials_token(
    oauth_dovecot: DovecotServer,
    oauth: OAuthServer,
    kafka_config: KafkaConfig,
    tmp_path: Path,
    mechanism: str,
) -> None:
    user = f"o-imap-{mechanism.lower()}"
    oauth_dovecot.add_user(user, "unused-password")
    oauth_dovecot.seed(user, [sample(1), sample(2)])
    oauth.clients[f"app-{user}"] = ("s3cret", user)
    auth = (
        f'{{ kind = "oauth2", mechanism = "{mechanism}", token_url = "{oauth.url}/token", '
        f'client_id = "app-{user}", client_secret = "s3cret", scope = "imap" }}'
    )
    config = make_config(tmp_path, kafka_config, _toml(oauth_dovecot, "imap", user, auth))
    source = config.tenants[0].sources[0]
    assert isinstance(source, ImapSource)
    ctx = make_context(config)
    before = oauth.introspections
    assert imap_pass(source, "acme", MailboxState("acme", user), ctx).fetched == 2
    assert oauth.introspections > before  # Dovecot really checked the token
    bad = source.model_copy(
        update={"auth": source.auth.model_copy(update={"client_id": "unknown"}), "id": "o-imap-bad"}
    )
    with pytest.raises(CredentialsError):
        imap_pass(bad, "acme", MailboxState("acme", "o-imap-bad"), ctx)
    ctx.publisher.close()


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_pop3_sasl_with_token_command(
    oauth_dovecot: DovecotServer,
    oauth: OAuthServer,
    kafka_config: KafkaConfig,
    tmp_path: Path,
    mechanism: str,
) -> None:
    user = f"o-pop-{mechanism.lower()}"
    oauth_dovecot.add_user(user, "unused-password")
    oauth_dovecot.seed(user, [sample(3)])
    oauth.tokens[f"static-{user}"] = user
    command = f'["{sys.executable}", "-c", "print(\'static-{user}\')"]'
    auth = f'{{ kind = "oauth2-command", mechanism = "{mechanism}", command = {command} }}'
    config = make_config(tmp_path, kafka_config, _toml(oauth_dovecot, "pop3", user, auth))
    source = config.tenants[0].sources[0]
    assert isinstance(source, Pop3Source)
    ctx = make_context(config)
    assert pop3_pass(source, "acme", MailboxState("acme", user), ctx).fetched == 1
    assert oauth_dovecot.message_count(user) == 0

    revoked = f'["{sys.executable}", "-c", "print(\'revoked-token\')"]'
    wrong = (
        make_config(
            tmp_path,
            kafka_config,
            _toml(oauth_dovecot, "pop3", user, auth.replace(command, revoked)),
        )
        .tenants[0]
        .sources[0]
    )
    assert isinstance(wrong, Pop3Source)
    oauth_dovecot.seed(user, [sample(4)])
    with pytest.raises(CredentialsError):
        pop3_pass(wrong, "acme", MailboxState("acme", user), make_context(config))
    assert oauth_dovecot.message_count(user) == 1
    ctx.publisher.close()
