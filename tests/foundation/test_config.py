"""Config loading: typed validation, line-numbered errors, secret references."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from mailferry.config import load_config, parse_config
from mailferry.config.models import RetryConfig
from mailferry.config.sources import ImapSource, Pop3Source
from mailferry.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mailferry.toml"

MINIMAL = """\
[[tenants]]
id = "acme"
accepted_domains = ["Acme.Example"]
default_mailbox = "postmaster@acme.example"
default_target = "archive"

[[tenants.targets]]
name = "archive"
kind = "maildir"
path = "/tmp/archive"
"""

SOURCE = """
[[tenants.sources]]
id = "box"
kind = "pop3"
mode = "personal"
host = "127.0.0.1"
username = "u"
deliver_to = "a@acme.example"
auth = {{ kind = "password", password = "{secret}" }}
"""


def problems(text: str, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.toml", **kwargs)
    return info.value.problems


def test_no_file_gives_embedded_defaults() -> None:
    config = load_config(None)
    assert config.kafka.uses_embedded
    assert config.tenants == []
    assert config.retry.horizon == timedelta(days=3)


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, check_secrets=False)
    assert [t.id for t in config.tenants] == ["acme", "globex"]
    kinds = {type(s) for t in config.tenants for s in t.sources}
    assert kinds == {Pop3Source, ImapSource}
    modes = {s.mode for t in config.tenants for s in t.sources}
    assert modes == {"personal", "global"}
    assert config.tenants[0].sources[0].delete_after == timedelta(days=7)


def test_domains_are_normalised() -> None:
    config = parse_config(MINIMAL)
    assert config.tenants[0].accepted_domains == ["acme.example"]


def test_unknown_key_names_file_line_and_field() -> None:
    text = MINIMAL.replace('id = "acme"', 'id = "acme"\ncolour = "blue"')
    assert problems(text) == ["cfg.toml:3: tenants[0].colour: unknown key"]


def test_wrong_type_in_inline_table_names_line() -> None:
    text = MINIMAL + SOURCE.format(secret="env:X").replace('host = "127.0.0.1"', "host = 7")
    found = problems(text, check_secrets=False)
    assert len(found) == 1
    assert found[0].startswith("cfg.toml:16: tenants[0].sources[0].host:")


def test_every_problem_is_reported_not_only_the_first() -> None:
    text = MINIMAL.replace('kind = "maildir"', 'kind = "maildir"\nconcurrency = 0') + (
        '\n[kafka]\ntopic_prefix = "bad prefix"\n'
    )
    found = problems(text)
    assert any(p.startswith("cfg.toml:10: tenants[0].targets[0].concurrency") for p in found)
    assert any(p.startswith("cfg.toml:14: kafka.topic_prefix") for p in found)


def test_clear_text_secret_refused_with_line() -> None:
    found = problems(MINIMAL + SOURCE.format(secret="hunter2"))
    assert len(found) == 1
    assert found[0].startswith("cfg.toml:19: tenants[0].sources[0].auth.password: clear-text secret")


def test_clear_text_secret_allowed_when_file_says_so_and_never_shown() -> None:
    text = "allow_plaintext_secrets = true\n" + MINIMAL + SOURCE.format(secret="hunter2")
    config = parse_config(text)
    source = config.tenants[0].sources[0]
    assert source.auth.password.reveal() == "hunter2"  # type: ignore[union-attr]
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.model_dump_json()


def test_missing_env_secret_names_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MF_TEST_SECRET", raising=False)
    found = problems(MINIMAL + SOURCE.format(secret="env:MF_TEST_SECRET"))
    assert found == [
        "cfg.toml:19: tenants[0].sources[0].auth.password: "
        "secret env:MF_TEST_SECRET: environment variable MF_TEST_SECRET is not set"
    ]
    monkeypatch.setenv("MF_TEST_SECRET", "s3cret")
    config = parse_config(MINIMAL + SOURCE.format(secret="env:MF_TEST_SECRET"))
    assert config.tenants[0].sources[0].auth.password.reveal() == "s3cret"  # type: ignore[union-attr]


def test_file_secret(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = parse_config(MINIMAL + SOURCE.format(secret=f"file:{secret}"))
    assert config.tenants[0].sources[0].auth.password.reveal() == "from-file"  # type: ignore[union-attr]


def test_plaintext_login_over_cleartext_needs_explicit_consent() -> None:
    text = MINIMAL + SOURCE.format(secret="env:X").replace(
        'host = "127.0.0.1"', 'host = "127.0.0.1"\ntls = "none"'
    )
    found = problems(text, check_secrets=False)
    assert "send the password in clear" in found[0]
    consenting = text.replace('tls = "none"', 'tls = "none"\nallow_plaintext_login = true')
    assert parse_config(consenting, check_secrets=False).tenants[0].sources[0].tls == "none"


def test_durations_and_sizes() -> None:
    text = MINIMAL + '\n[retry]\ntiers = ["30s", "10m", "2h", "1d"]\nhorizon = "3d"\n'
    text += '[blob_store]\ninline_threshold = "1MiB"\n'
    config = parse_config(text)
    assert config.retry.tiers == [
        timedelta(seconds=30),
        timedelta(minutes=10),
        timedelta(hours=2),
        timedelta(days=1),
    ]
    assert config.blob_store.inline_threshold == 1024 * 1024
    assert problems(MINIMAL + '\n[retry]\nhorizon = "soon"\n')[0].startswith("cfg.toml:13: retry.horizon")


def test_default_target_must_exist() -> None:
    found = problems(MINIMAL.replace('default_target = "archive"', 'default_target = "nope"'))
    assert "default_target 'nope' is not one of ['archive']" in found[0]
    assert found[0].startswith("cfg.toml:1: tenants[0]")


def test_invalid_toml_reports_position() -> None:
    with pytest.raises(ConfigError, match=r"cfg.toml: invalid TOML: .*line 2"):
        parse_config("[kafka]\nbootstrap_servers = ]\n", source="cfg.toml")


@pytest.mark.parametrize(
    "value", [timedelta(days=30), timedelta(seconds=90), timedelta(milliseconds=250), timedelta(0)]
)
def test_a_dumped_duration_reads_back(value: timedelta) -> None:

    dumped = RetryConfig(tiers=[value]).model_dump(mode="json")
    assert RetryConfig.model_validate(dumped).tiers == [value]


def test_a_bad_duration_names_the_value() -> None:

    with pytest.raises(ValueError, match="got 'soon'"):
        RetryConfig.model_validate({"tiers": ["soon"]})
