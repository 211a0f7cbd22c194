"""The mailferry configuration the benchmark runs: like the demo's, generated for the corpus.

One tenant, one POP3 source per corpus mailbox (the personal ones deliver to their owner, the
global one routes by the corpus's envelope header), one target: the SMTP sink or the EWS
emulator. Mail is left on the server, as fetchmail's ``keep`` and getmail6's ``delete = false``
do, so every client does the same work on the server.
"""

from __future__ import annotations

import json
from pathlib import Path

from corpus import DOMAIN, ENVELOPE_HEADER, GLOBAL_MAILBOX
from source import Corpus

TENANT = "bench"


def _toml(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def render(
    *,
    users: list[str],
    pop3_port: int,
    state_dir: Path,
    target: dict[str, object],
    poll_seconds: float,
    fetch_concurrency: int | None = None,
) -> str:
    lines = [
        "allow_plaintext_secrets = true",
        f"state_dir = {_toml(str(state_dir))}",
        "",
        "[kafka]",
        'topic_prefix = "bench"',
        "[kafka.embedded]",
        "port = 0",
        "",
        "[[tenants]]",
        f'id = "{TENANT}"',
        f'accepted_domains = ["{DOMAIN}"]',
        f'default_mailbox = "postmaster@{DOMAIN}"',
        f'default_target = "{target["name"]}"',
        *([f"fetch_concurrency = {fetch_concurrency}"] if fetch_concurrency else []),
        "",
        "[[tenants.targets]]",
        *(f"{key} = {_toml(value)}" for key, value in target.items()),
    ]
    for user in users:
        lines += [
            "",
            "[[tenants.sources]]",
            f'id = "{user}"',
            'kind = "pop3"',
            f'mode = "{"global" if user == GLOBAL_MAILBOX else "personal"}"',
            'host = "127.0.0.1"',
            f"port = {pop3_port}",
            'tls = "none"',
            "allow_plaintext_login = true",
            f'username = "{user}"',
            f'auth = {{ kind = "password", password = "{Corpus.password(user)}" }}',
            "leave_on_server = true",
            f'poll_interval = "{poll_seconds:g}s"',
        ]
        if user == GLOBAL_MAILBOX:
            lines.append(f'envelope_headers = ["{ENVELOPE_HEADER}"]')
        else:
            lines.append(f'deliver_to = "{user}@{DOMAIN}"')
    return "\n".join(lines) + "\n"


def smtp_target(port: int) -> dict[str, object]:
    return {"name": "sink", "kind": "smtp", "host": "127.0.0.1", "port": port, "tls": "none"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path
