"""Shared pieces of the operator-command tests."""

from __future__ import annotations

from pathlib import Path

from mailferry.config.kafka import KafkaConfig


def history_config(tmp_path: Path, kafka: KafkaConfig, *, inline_threshold: str, extra: str = "") -> Path:
    """``tmp_path / "mailferry.toml"``: tenant acme with a Maildir target and a personal POP3
    source ``history`` delivering to alice, the mailbox the import and replay commands name;
    ``extra`` adds top-level tables (``[retry]``)."""
    path = tmp_path / "mailferry.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + f'[blob_store]\ninline_threshold = "{inline_threshold}"\n'
        + extra
        + '[[tenants]]\nid = "acme"\naccepted_domains = ["acme.example"]\n'
        'default_mailbox = "postmaster@acme.example"\ndefault_target = "archive"\n'
        '[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "/tmp/unused"\n'
        '[[tenants.sources]]\nid = "history"\nkind = "pop3"\nmode = "personal"\nhost = "127.0.0.1"\n'
        'username = "u"\nauth = { kind = "password", password = "x" }\ntls = "none"\n'
        'allow_plaintext_login = true\ndeliver_to = "alice@acme.example"\n',
        encoding="utf-8",
    )
    return path
