"""``mailferry config validate`` refuses a file that parses but cannot run the pipeline."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mailferry.cli.main import app

TENANT = """
[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "box"

[[tenants.targets]]
name = "box"
kind = "maildir"
path = "/tmp/mf-box"
"""

SPARE = """
[[tenants.targets]]
name = "spare"
kind = "maildir"
path = "/tmp/mf-spare"
"""


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "m.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "validate", str(path), "--no-check-secrets"])
    return result.exit_code, result.output


def test_a_working_file_is_valid(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, TENANT)
    assert code == 0, output


def test_no_tenants_is_refused(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "[kafka]\nbootstrap_servers = ['k:9092']\n")
    assert code == 2
    assert "tenants: no tenants: the fetch, stream and deliver roles would have nothing to do" in output


def test_sasl_without_mechanism_or_credentials_is_refused(tmp_path: Path) -> None:
    code, output = _validate(
        tmp_path, "[kafka]\nbootstrap_servers = ['k:9092']\nsecurity_protocol = 'SASL_SSL'\n" + TENANT
    )
    assert code == 2
    assert "m.toml:3: kafka.security_protocol: SASL_SSL needs kafka.sasl_mechanism" in output
    assert "SASL needs kafka.sasl_username and kafka.sasl_password" in output
    code, output = _validate(
        tmp_path,
        "[kafka]\nsecurity_protocol = 'SASL_SSL'\nsasl_mechanism = 'SCRAM-SHA-512'\n"
        "sasl_username = 'mf'\nsasl_password = 'env:MF_KAFKA_PW'\n" + TENANT,
    )
    assert code == 0, output


def test_a_target_nobody_uses_is_refused(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, TENANT + SPARE)
    assert code == 2
    assert "m.toml:14: tenants[0].targets[1].name: target 'spare' of tenant acme is used by no" in output
    rule = (
        '\n[[tenants.rules.rules]]\nid = "big"\naction = "copy-to"\nto = ["archive@acme.example"]\n'
        'target = "spare"\nconditions = [{ size_over = "10MB" }]\n'
    )
    code, output = _validate(tmp_path, TENANT + SPARE + rule)
    assert code == 0, output


def test_an_unknown_secret_scheme_is_named_as_such(tmp_path: Path) -> None:
    smtp = 'kind = "smtp"\nhost = "mx"\nusername = "u"\npassword = "vault:secret/mx"'
    text = TENANT.replace('kind = "maildir"\npath = "/tmp/mf-box"', smtp)
    code, output = _validate(tmp_path, text)
    assert code == 2
    assert "unknown secret scheme 'vault:'" in output
    assert "clear-text" not in output
