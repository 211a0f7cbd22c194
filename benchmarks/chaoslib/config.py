"""The mailferry configuration the chaos suite's roles run with: four tenants, one target
each, two source mailboxes per tenant, topics on the embedded broker or the cluster."""

from __future__ import annotations

from pathlib import Path

from mailferry.config.kafka import KafkaConfig
from mailferry_testkit.dovecot import DovecotServer

from .mail import TARGETS, address, domain, users
from .targets import EWS_ACCOUNT, EWS_PASSWORD, GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT


def _target_lines(target: str, work: Path, urls: dict[str, str]) -> list[str]:
    return {
        "ews": [
            'kind = "ews"',
            f'endpoint = "{urls["ews"]}"',
            'version = "Exchange2016"',
            'auth = "basic"',
            f'username = "{EWS_ACCOUNT}"',
            f'password = "{EWS_PASSWORD}"',
            "impersonation = true",
        ],
        "graph": [
            'kind = "graph"',
            f'base_url = "{urls["graph"]}"',
            f'authority = "{urls["graph-authority"]}"',
            f'ca_file = "{urls["graph-ca-file"]}"',
            f'tenant_id = "{GRAPH_TENANT}"',
            f'client_id = "{GRAPH_APP}"',
            f'client_secret = "{GRAPH_SECRET}"',
        ],
        "smtp": ['kind = "smtp"', 'host = "127.0.0.1"', f"port = {urls['smtp']}", 'tls = "none"'],
        "maildir": ['kind = "maildir"', f'path = "{work / "maildir"}"'],
    }[target]


def config_text(
    work: Path, kafka: KafkaConfig, replication: int, server: DovecotServer, urls: dict[str, str]
) -> str:
    lines = [
        "allow_plaintext_secrets = true  # chaos-suite passwords for loopback emulators",
        f'state_dir = "{work / "state"}"',
        "",
        kafka.connection_toml(),
        "[kafka.topics.defaults]",
        f"replication_factor = {replication}",
        "",
        "[retry]",
        'tiers = ["2s", "10s", "1m"]',
        "",
        "[stream]",
        "web_port = 0",
    ]
    for target in TARGETS:
        lines += [
            "",
            "[[tenants]]",
            f'id = "t-{target}"',
            f'accepted_domains = ["{domain(target)}"]',
            f'default_mailbox = "postmaster@{domain(target)}"',
            f'default_target = "{target}"',
            "",
            "[[tenants.targets]]",
            f'name = "{target}"',
            *_target_lines(target, work, urls),
            "max_message_size = 64000000",
        ]
        for user, protocol in users(target):
            tls = ("implicit", server.pop3s_port) if protocol == "pop3" else ("starttls", server.imap_port)
            lines += [
                "",
                "[[tenants.sources]]",
                f'id = "{user}"',
                f'kind = "{protocol}"',
                'mode = "personal"',
                'host = "127.0.0.1"',
                f"port = {tls[1]}",
                f'tls = "{tls[0]}"',
                f'ca_file = "{server.ca_file}"',
                f'username = "{user}"',
                f'auth = {{ kind = "password", password = "pw-{user}" }}',
                f'deliver_to = "{address(user)}"',
                'poll_interval = "1s"',
            ]
    return "\n".join(lines) + "\n"
