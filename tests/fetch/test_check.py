"""``mailferry check`` against the real Dovecot: TLS, certificate, login, capabilities, count and
size, nothing fetched; a wrong password is a failed verdict with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry_testkit.dovecot import DovecotServer
from tests.fetch.helpers import sample

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, dovecot: DovecotServer, password: str = "pw") -> Path:
    text = f"""allow_plaintext_secrets = true
state_dir = "{tmp_path / "state"}"

[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "box"

[[tenants.targets]]
name = "box"
kind = "maildir"
path = "{tmp_path / "maildir"}"

[[tenants.sources]]
id = "pop"
kind = "pop3"
mode = "personal"
host = "127.0.0.1"
port = {dovecot.pop3s_port}
tls = "implicit"
ca_file = "{dovecot.ca_file}"
username = "checkpop"
auth = {{ kind = "password", password = "{password}" }}
deliver_to = "alice@acme.example"

[[tenants.sources]]
id = "imap"
kind = "imap"
mode = "global"
host = "127.0.0.1"
port = {dovecot.imap_port}
tls = "starttls"
ca_file = "{dovecot.ca_file}"
username = "checkimap"
auth = {{ kind = "password", password = "pw" }}
"""
    path = tmp_path / "mailferry.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_reports_tls_login_capabilities_and_counts_without_fetching(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    messages = [sample(1, 500), sample(2, 700)]
    for user in ("checkpop", "checkimap"):
        dovecot.add_user(user, "pw")
        dovecot.seed(user, messages)
    config = str(_config(tmp_path, dovecot))
    result = CliRunner().invoke(app, ["-c", config, "check", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    checks = {c["name"]: c for c in answer["checks"]}
    assert answer["ok"] is True and set(checks) == {"acme/pop", "acme/imap", "acme/box"}
    pop, imap = checks["acme/pop"], checks["acme/imap"]
    for check in (pop, imap):
        assert check["verdict"] == "OK" and check["authenticated"] is True
        assert check["tls"]["version"].startswith("TLSv1.")
        assert check["tls"]["days_left"] > 0 and "CN=" in check["tls"]["subject"]
        assert check["messages"] == 2
    assert pop["capabilities"]["UIDL"] is True and pop["capabilities"]["PIPELINING"] is True
    assert imap["capabilities"]["IDLE"] is True and imap["capabilities"]["MOVE"] is True
    assert pop["size"] >= sum(len(m) for m in messages) and imap["size"] >= sum(len(m) for m in messages)
    for user in ("checkpop", "checkimap"):
        assert dovecot.message_count(user) == 2  # nothing fetched, nothing deleted

    one = CliRunner().invoke(app, ["-c", config, "check", "acme/imap"])
    assert one.exit_code == 0, one.output
    assert "acme/imap (imap)" in one.output and "verdict: OK" in one.output
    assert "acme/pop" not in one.output


def test_check_fails_clearly_on_a_wrong_password_and_an_unknown_name(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    dovecot.add_user("checkpop", "pw")
    config = str(_config(tmp_path, dovecot, password="wrong"))
    result = CliRunner().invoke(app, ["-c", config, "check", "acme/pop"])
    assert result.exit_code == 1, result.output
    assert "verdict: FAILED: source pop: login refused" in result.output
    unknown = CliRunner().invoke(app, ["-c", config, "check", "acme/nothing"])
    assert unknown.exit_code == 1
    assert "no tenant, source or target named acme/nothing" in unknown.output
