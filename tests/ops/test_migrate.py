"""``mailferry migrate``: a corpus of fetchmailrc and getmailrc files written after the
fetchmail and getmail6 manuals; every output validates, no password is copied."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app

RC = Path(__file__).parent / "rc"
FETCHMAIL = sorted((RC / "fetchmail").glob("*.rc"))
GETMAIL = sorted((RC / "getmail").glob("getmailrc-*"))
PASSWORDS = re.compile(r"Pw-[\w-]+")


def migrate(kind: str, *args: str) -> tuple[dict[str, Any], str, str]:
    result = CliRunner().invoke(app, ["migrate", kind, *args])
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout), result.stdout, result.stderr


def validates(text: str, stderr: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"^  (MAILFERRY_\w+)", stderr, re.MULTILINE):
        monkeypatch.setenv(name, "set-by-the-operator")
    path = tmp_path / "migrated.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output


def sources(config: dict[str, Any]) -> list[dict[str, Any]]:
    [tenant] = config["tenants"]
    result: list[dict[str, Any]] = tenant["sources"]
    return result


@pytest.mark.parametrize("rc", FETCHMAIL, ids=[p.name for p in FETCHMAIL])
def test_every_fetchmailrc_migrates_to_a_valid_config_without_its_passwords(
    rc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, text, stderr = migrate("fetchmailrc", str(rc), "--domain", "acme.example")
    assert not PASSWORDS.search(text + stderr)
    for source in sources(config):
        if source["auth"]["kind"] == "password":
            variable = source["auth"]["password"].removeprefix("env:")
            assert variable in stderr
    validates(text, stderr, tmp_path, monkeypatch)


def test_fetchmail_personal_pop3s_with_keep() -> None:
    config, _, _ = migrate("fetchmailrc", str(RC / "fetchmail/01-personal-pop3s.rc"))
    [source] = sources(config)
    assert (source["kind"], source["mode"], source["tls"], source["port"]) == (
        "pop3",
        "personal",
        "implicit",
        995,
    )
    assert source["leave_on_server"] is True and source["deliver_to"] == "joe@acme.example"
    assert source["poll_interval"] == "300s" and source["username"] == "joe"
    assert config["tenants"][0]["default_mailbox"] == "postmaster@acme.example"


def test_fetchmail_imap_folders_and_starttls() -> None:
    config, text, _ = migrate(
        "fetchmailrc", str(RC / "fetchmail/02-imap-folders.rc"), "--domain", "acme.example"
    )
    [source] = sources(config)
    assert source["folders"] == ["INBOX", "Archive", "Sent Items"] and source["tls"] == "starttls"
    assert source["deliver_to"] == "alice@acme.example"
    assert "fetchall" in text


def test_fetchmail_multidrop_becomes_a_global_mailbox() -> None:
    config, _, _ = migrate("fetchmailrc", str(RC / "fetchmail/03-multidrop-envelope.rc"))
    [source] = sources(config)
    assert source["mode"] == "global" and source["envelope_headers"] == ["Delivered-To"]
    assert "deliver_to" not in source and "leave_on_server" not in source
    assert config["tenants"][0]["accepted_domains"] == ["acme.example", "acme-corp.example"]
    assert source["poll_interval"] == "60s"


def test_fetchmail_envelope_count_skips_occurrences() -> None:
    config, _, _ = migrate("fetchmailrc", str(RC / "fetchmail/04-envelope-count.rc"))
    [source] = sources(config)
    assert source["envelope_headers"] == ["X-Original-To"] and source["trusted_occurrence"] == 2


def test_fetchmail_defaults_apply_and_skip_disables() -> None:
    config, _, _ = migrate("fetchmailrc", str(RC / "fetchmail/05-defaults-and-skip.rc"))
    first, second = sources(config)
    assert (first["kind"], first["tls"], first["timeout"]) == ("imap", "implicit", "90s")
    assert first.get("enabled", True) is True
    assert second["enabled"] is False and second["after_fetch"] == "seen"


def test_fetchmail_via_interval_and_limits() -> None:
    config, _, _ = migrate(
        "fetchmailrc", str(RC / "fetchmail/06-via-and-interval.rc"), "--domain", "acme.example"
    )
    [source] = sources(config)
    assert source["host"] == "imap.real-host.example" and source["poll_interval"] == "600s"
    assert (source["max_message_size"], source["max_messages_per_pass"]) == (20000000, 50)


def test_fetchmail_apop_and_delivery_options_named() -> None:
    config, text, _ = migrate("fetchmailrc", str(RC / "fetchmail/07-apop-mda.rc"), "--domain", "acme.example")
    [source] = sources(config)
    assert source["auth"]["apop"] is True
    assert "mda, stripcr: delivery goes to the tenant's target instead" in text


def test_fetchmail_plain_text_is_not_carried_over_silently() -> None:
    config, text, _ = migrate("fetchmailrc", str(RC / "fetchmail/08-plaintext-sslproto-empty.rc"))
    [source] = sources(config)
    assert source["tls"] == "starttls" and source["port"] == 11110
    assert "plain text (sslproto '')" in text and "mailferry always verifies certificates" in text


def test_fetchmail_oauth_needs_a_token_helper() -> None:
    config, text, _ = migrate("fetchmailrc", str(RC / "fetchmail/09-oauth.rc"))
    [source] = sources(config)
    assert source["auth"] == {
        "kind": "oauth2-command",
        "mechanism": "OAUTHBEARER",
        "command": ["CHANGE-ME-token-helper"],
    }
    assert "set auth.command" in text


def test_fetchmail_several_local_names_and_no_envelope() -> None:
    config, text, _ = migrate(
        "fetchmailrc", str(RC / "fetchmail/10-multiple-locals.rc"), "--domain", "acme.example"
    )
    [source] = sources(config)
    assert source["mode"] == "global" and source["envelope_headers"] == [] and source["guess_from_headers"]
    assert source["ca_file"] == "/etc/ssl/certs/provider.pem"
    assert "local names frank, grace" in text and "antispam, smtphost" in text


def test_fetchmail_what_cannot_be_fetched_is_named() -> None:
    config, text, _ = migrate("fetchmailrc", str(RC / "fetchmail/11-unsupported.rc"))
    [source] = sources(config)
    assert source["kind"] == "pop3" and source["host"] == "auto.example"
    assert "protocol etrn is not supported" in text and "protocol auto: chose pop3" in text
    assert "set logfile /var/log/fetchmail.log" in text and "plugin, preconnect: not carried over" in text


def test_getmail_accounts_migrate_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, text, stderr = migrate("getmailrc", *map(str, GETMAIL), "--domain", "acme.example")
    by_user = {s["username"]: s for s in sources(config)}
    assert set(by_user) == {"ivan@acme.example", "judy", "catchall", "kim@contoso.example"}
    ivan, judy, catchall, kim = (
        by_user[u] for u in ("ivan@acme.example", "judy", "catchall", "kim@contoso.example")
    )
    assert (ivan["kind"], ivan["tls"], ivan["deliver_to"]) == ("pop3", "implicit", "ivan@acme.example")
    assert "leave_on_server" not in ivan  # delete = true
    assert judy["folders"] == ["INBOX", "Lists/dev"] and judy["after_fetch"] == "seen"
    assert judy["max_message_size"] == 10000000 and judy["deliver_to"] == "judy@acme.example"
    assert catchall["mode"] == "global" and catchall["envelope_headers"] == ["delivered-to"]
    assert catchall["trusted_occurrence"] == 2 and catchall["max_messages_per_pass"] == 200
    assert kim["auth"]["kind"] == "oauth2-command"
    assert "not a getmailrc" in text and "move_on_delete: not carried over" in text
    assert not PASSWORDS.search(text + stderr)
    monkeypatch.setenv("MAILFERRY_EWS_PASSWORD", "x")
    validates(text, stderr, tmp_path, monkeypatch)
