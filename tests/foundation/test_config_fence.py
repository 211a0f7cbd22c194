"""The tenant fence in the config: file, line and field of every value that points outside a
tenant, and of a domain two tenants claim (issue 11 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailferry.cli.main import app
from mailferry.config import parse_config
from mailferry.errors import ConfigError

TWO_TENANTS = """\
[[tenants]]
id = "acme"
accepted_domains = ["acme.example", "bücher.example"]
default_mailbox = "postmaster@acme.example"
default_target = "box"
aliases = { "sales@acme.example" = "alice@acme.example" }

[tenants.address_map]
"alice@isp.example" = "alice@acme.example"

[[tenants.targets]]
name = "box"
kind = "maildir"
path = "/tmp/box"

[[tenants.sources]]
id = "alice"
kind = "pop3"
mode = "personal"
host = "127.0.0.1"
username = "u"
deliver_to = "alice@acme.example"
auth = { kind = "password", password = "env:X" }

[[tenants.rules.rules]]
id = "invoices"
action = "copy-to"
to = ["accounting@acme.example", "books@BÜCHER.example"]
conditions = [{ header = "Subject", contains = "invoice" }]

[[tenants]]
id = "globex"
accepted_domains = ["globex.example"]
default_mailbox = "it@globex.example"
default_target = "box"

[[tenants.targets]]
name = "box"
kind = "maildir"
path = "/tmp/globex"
"""


ACME = "(acme.example, xn--bcher-kva.example)"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.toml", check_secrets=False)
    return info.value.problems


def test_a_fenced_config_is_valid() -> None:
    config = parse_config(TWO_TENANTS, check_secrets=False)
    assert [t.id for t in config.tenants] == ["acme", "globex"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'accepted_domains = ["globex.example"]',
            'accepted_domains = ["globex.example", "ACME.example."]',
            "cfg.toml:33: tenants[1].accepted_domains[1]: domain 'acme.example' is already accepted "
            "by tenant acme (tenants[0])",
        ),
        (
            'accepted_domains = ["globex.example"]',
            'accepted_domains = ["globex.example", "xn--bcher-kva.example"]',  # bücher.example in ASCII
            "cfg.toml:33: tenants[1].accepted_domains[1]: domain 'xn--bcher-kva.example' is already "
            "accepted by tenant acme (tenants[0])",
        ),
        (
            '"sales@acme.example" = "alice@acme.example"',
            '"sales@acme.example" = "ceo@globex.example"',
            "cfg.toml:6: tenants[0].aliases.sales@acme.example: alias 'sales@acme.example' -> "
            f"'ceo@globex.example' is outside tenant acme's accepted_domains {ACME}",
        ),
        (
            '"alice@isp.example" = "alice@acme.example"',
            '"alice@isp.example" = "alice@globex.example"',
            "cfg.toml:9: tenants[0].address_map.alice@isp.example: address_map 'alice@isp.example' -> "
            f"'alice@globex.example' is outside tenant acme's accepted_domains {ACME}",
        ),
        (
            'deliver_to = "alice@acme.example"',
            'deliver_to = "alice@globex.example"',
            "cfg.toml:22: tenants[0].sources[0].deliver_to: source 'alice' deliver_to 'alice@globex.example' "
            "is outside tenant acme's accepted_domains (acme.example, xn--bcher-kva.example)",
        ),
        (
            '"books@BÜCHER.example"]',
            '"books@BÜCHER.example", "it@globex.example"]',
            "cfg.toml:28: tenants[0].rules.rules[0].to[2]: rule 'invoices' to 'it@globex.example' "
            "is outside tenant acme's accepted_domains (acme.example, xn--bcher-kva.example)",
        ),
        (
            'default_mailbox = "it@globex.example"',
            'default_mailbox = "postmaster@acme.example"',
            "cfg.toml:34: tenants[1].default_mailbox: default_mailbox 'postmaster@acme.example' "
            "is outside tenant globex's accepted_domains (globex.example)",
        ),
        (
            '"sales@acme.example" = "alice@acme.example"',
            '"sales@acme.example" = "alice"',
            "cfg.toml:6: tenants[0].aliases.sales@acme.example: alias 'sales@acme.example' -> 'alice' "
            "is not a mail address",
        ),
    ],
)
def test_a_value_outside_the_tenant_is_refused_with_file_line_and_field(
    old: str, new: str, expected: str
) -> None:
    assert old in TWO_TENANTS
    assert problems(TWO_TENANTS.replace(old, new)) == [expected]


def test_every_crossing_is_reported_at_once() -> None:
    text = TWO_TENANTS.replace(
        'deliver_to = "alice@acme.example"', 'deliver_to = "a@globex.example"'
    ).replace(
        'accepted_domains = ["globex.example"]', 'accepted_domains = ["globex.example", "acme.example"]'
    )
    found = problems(text)
    assert [p.split(": ", 2)[1] for p in found] == [
        "tenants[1].accepted_domains[1]",
        "tenants[0].sources[0].deliver_to",
    ]


def test_config_validate_refuses_a_crossing_config(tmp_path: Path) -> None:
    path = tmp_path / "mailferry.toml"
    path.write_text(
        TWO_TENANTS.replace('"ceo@', '"x@').replace('= "alice@acme.example" }', '= "ceo@globex.example" }')
    )
    result = CliRunner().invoke(app, ["config", "validate", str(path), "--no-check-secrets"])
    assert result.exit_code == 2, result.output
    assert f"{path}:6: tenants[0].aliases.sales@acme.example: alias" in " ".join(result.output.split())
