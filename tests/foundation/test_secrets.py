"""Secrets in the config: never shown, echoed by an error or published; unsafe transports refused."""

from __future__ import annotations

import typing
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ValidationError

from mailferry.config import MailferryConfig, parse_config
from mailferry.config.models import Tenant
from mailferry.config.secrets import SecretRef
from mailferry.config.targets import SmtpTarget
from mailferry.errors import ConfigError
from mailferry.producers.mailboxes import mailbox_record, resolve_source
from tests.foundation.test_config import MINIMAL, SOURCE, problems

ALLOW = {"allow_plaintext_secrets": True}


def config_fields(model: type[BaseModel] = MailferryConfig) -> Iterator[tuple[str, list[object]]]:
    """``("Model.field", [leaf types])`` for every field of every model in the config tree."""
    seen: set[type[BaseModel]] = set()
    pending = [model]
    while pending:
        kind = pending.pop()
        if kind in seen:
            continue
        seen.add(kind)
        for name, field in kind.model_fields.items():
            leaves = _leaf_types(field.annotation)
            yield f"{kind.__name__}.{name}", leaves
            pending += [leaf for leaf in leaves if isinstance(leaf, type) and issubclass(leaf, BaseModel)]


def secret_fields() -> set[str]:
    """Every ``Model.field`` of the config tree that holds a secret."""
    return {name for name, leaves in config_fields() if SecretRef in leaves}


def _leaf_types(annotation: object) -> list[object]:
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _leaf_types(args[0])
    return [leaf for arg in args for leaf in _leaf_types(arg)]


def secret_values(config: BaseModel) -> dict[str, list[SecretRef]]:
    """``Model.field`` -> the SecretRefs of that field found in ``config`` (what a config seeds)."""
    out: dict[str, list[SecretRef]] = {}

    def walk(value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                item = getattr(value, name)
                if isinstance(item, SecretRef):
                    out.setdefault(f"{type(value).__name__}.{name}", []).append(item)
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(config)
    return out


def test_the_secret_field_walker_finds_the_known_fields() -> None:
    assert {
        "PasswordAuth.password",
        "OAuth2ClientCredentials.client_secret",
        "EwsTarget.password",
        "EwsTarget.client_secret",
        "GraphTarget.client_secret",
        "SmtpTarget.password",
        "KafkaConfig.sasl_password",
    } <= secret_fields()


def test_a_secret_shows_only_its_reference() -> None:
    secret = SecretRef.plaintext("hunter2-value")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "{}".format(secret)]  # noqa: UP032
    assert not any("hunter2-value" in text for text in shown)
    assert secret.reveal() == "hunter2-value"


def _tenant(password: str, **target: object) -> dict[str, object]:
    return {
        "id": "acme",
        "accepted_domains": ["acme.example"],
        "default_mailbox": "postmaster@acme.example",
        "default_target": "nowhere",  # refused by the tenant's model validator
        "targets": [
            {"name": "smtp", "kind": "smtp", "host": "mx", "username": "u", "password": password} | target
        ],
    }


def test_validation_errors_never_echo_a_secret() -> None:
    """A model-level error used to print the whole input (``input_value={...'password': ...}``)."""
    texts = []
    for attempt in (
        lambda: Tenant.model_validate(_tenant("hunter2-tenant"), context=ALLOW),
        lambda: SmtpTarget.model_validate(_tenant("hunter2-smtp", tls="none")["targets"][0], context=ALLOW),  # type: ignore[index]
        lambda: SmtpTarget.model_validate(_tenant("hunter2-refused")["targets"][0]),  # type: ignore[index]
    ):
        with pytest.raises(ValidationError) as info:
            attempt()
        texts.append(str(info.value) + repr(info.value))
    assert all("hunter2" not in text for text in texts), texts
    assert "default_target 'nowhere'" in texts[0]


def _source_config(password: str, host: str = "127.0.0.1") -> MailferryConfig:
    text = "allow_plaintext_secrets = true\n" + MINIMAL + SOURCE.format(secret=password)
    return parse_config(text.replace('host = "127.0.0.1"', f'host = "{host}"'))


def test_the_mailboxes_record_carries_references_not_clear_text() -> None:
    config = _source_config("hunter2-mailbox")
    record = mailbox_record("acme", config.tenants[0].sources[0])
    assert "hunter2" not in str(record)
    assert '"password":"config:auth.password"' in str(record["config_json"])

    with_env = parse_config(MINIMAL + SOURCE.format(secret="env:POP_PW"), check_secrets=False)
    assert '"password":"env:POP_PW"' in str(
        mailbox_record("acme", with_env.tenants[0].sources[0])["config_json"]
    )


def test_a_worker_polls_with_its_own_config_and_only_what_matches_it() -> None:
    config = _source_config("hunter2-worker")
    record = mailbox_record("acme", config.tenants[0].sources[0])
    source = resolve_source(config, "acme", "box", str(record["config_json"]))
    assert source.auth.password.reveal() == "hunter2-worker"  # type: ignore[union-attr]

    # a topic writer pointing the mailbox at its own host gets no secret sent there
    forged = mailbox_record("acme", _source_config("x", host="attacker.example").tenants[0].sources[0])
    with pytest.raises(ConfigError, match="differs from this worker's config file"):
        resolve_source(config, "acme", "box", str(forged["config_json"]))
    with pytest.raises(ConfigError, match="not in this worker's config file"):
        resolve_source(config, "acme", "other", str(record["config_json"]))


@pytest.mark.parametrize(
    ("secret", "scheme"),
    [("vault:secret/data/pop#password", "vault"), ("op://Private/pop/password", "op"), ("Env:POP_PW", "Env")],
)
@pytest.mark.parametrize("allow_plaintext", [False, True])
def test_an_unknown_secret_scheme_is_named_not_called_clear_text(
    secret: str, scheme: str, allow_plaintext: bool
) -> None:
    text = (
        ("allow_plaintext_secrets = true\n" if allow_plaintext else "")
        + MINIMAL
        + SOURCE.format(secret=secret)
    )
    (problem,) = problems(text)
    assert f"auth.password: unknown secret scheme '{scheme}:'" in problem
    assert "clear-text" not in problem


def test_a_clear_text_password_with_a_colon_is_not_echoed_as_a_scheme() -> None:
    (problem,) = problems(MINIMAL + SOURCE.format(secret="correct:horse"))
    assert "clear-text secret refused" in problem and "correct" not in problem


def test_an_empty_reference_names_nothing() -> None:
    (problem,) = problems(MINIMAL + SOURCE.format(secret="env:"))
    assert "'env:' names nothing" in problem


SMTP = """
[[tenants.targets]]
name = "relay"
kind = "smtp"
host = "127.0.0.1"
tls = "none"
{extra}"""


def test_smtp_refuses_a_password_over_tls_none_without_opt_in() -> None:
    login = 'username = "svc"\npassword = "env:SMTP_PW"\n'
    (problem,) = problems(MINIMAL + SMTP.format(extra=login), check_secrets=False)
    assert problem.startswith("cfg.toml:12: tenants[0].targets[1]")
    assert "tls = 'none' would send the password in clear" in problem
    opted = parse_config(
        MINIMAL + SMTP.format(extra=login + "allow_plaintext_login = true\n"), check_secrets=False
    )
    assert opted.tenants[0].targets[1].kind == "smtp"
    assert parse_config(MINIMAL + SMTP.format(extra="")).tenants[0].targets[1].kind == "smtp"


OAUTH_SOURCE = """
[[tenants.sources]]
id = "box"
kind = "imap"
mode = "global"
host = "127.0.0.1"
username = "u"
auth = {{ kind = "oauth2", token_url = "{url}", client_id = "app", client_secret = "env:X" }}
"""
GRAPH = """
[[tenants.targets]]
name = "graph"
kind = "graph"
tenant_id = "t"
client_id = "app"
client_secret = "env:X"
{key} = "{url}"
"""
EWS = """
[[tenants.targets]]
name = "ews"
kind = "ews"
{key} = "{url}"
"""


@pytest.mark.parametrize(
    "block",
    [
        OAUTH_SOURCE.format(url="{url}"),
        GRAPH.format(key="token_url", url="{url}"),
        GRAPH.format(key="base_url", url="{url}"),
        EWS.format(key="token_url", url="{url}"),
        EWS.format(key="endpoint", url="{url}"),
    ],
)
def test_credentials_go_only_to_https_or_loopback(block: str) -> None:
    def check(url: str) -> list[str]:
        try:
            parse_config(MINIMAL + block.replace("{url}", url), source="cfg.toml", check_secrets=False)
        except ConfigError as exc:
            return exc.problems
        return []

    (problem,) = check("http://login.example/token")
    assert "http:// would send credentials in clear" in problem
    (problem,) = check("https://user:pw-in-url@login.example/token")
    assert "credentials in a URL are refused" in problem and "pw-in-url" not in problem
    for good in (
        "https://login.example/token",
        "http://127.0.0.1:8080/token",
        "http://[::1]/t",
        "http://localhost/t",
    ):
        assert check(good) == [], good


def test_every_field_named_like_a_secret_is_a_secret_type() -> None:
    """A new ``password``/``secret``/``key`` field typed ``str`` would be shown and published."""
    words = ("password", "secret", "token", "key")
    named = {
        name
        for name, _ in config_fields()
        if any(word in name.split(".")[1] for word in words)
        and name.split(".")[1] not in {"allow_plaintext_secrets", "token_url", "ssl_keyfile"}
        and not name.endswith("_id")  # key ids name a secret, they are not one
    }
    assert named - secret_fields() == set()
