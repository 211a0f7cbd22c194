"""Read-only commands need Kafka access only: no secret of a source or target is read for them.

The roles still stop at start-up, naming file, line and field, when a secret they need is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mailferry.config import load_config
from mailferry.config.kafka import KafkaConfig
from tests.foundation.test_secrets import secret_fields, secret_values

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, kafka: KafkaConfig, missing: str) -> Path:
    """Every source and target secret an environment variable this host does not have."""
    ref = f"env:{missing}"
    text = f"""\
state_dir = "{tmp_path / "state"}"

{kafka.connection_toml()}
[stream]
trace_key = "{ref}"

[blob_store]
kind = "s3"

[blob_store.s3]
bucket = "mail"
access_key_id = "{ref}"
secret_access_key = "{ref}"

[console]
token = "{ref}"
password_hash = "{ref}"

[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "ews"

[[tenants.targets]]
name = "ews"
kind = "ews"
endpoint = "https://mail.acme.example/EWS/Exchange.asmx"
auth = "ntlm"
username = "svc"
password = "{ref}"
client_secret = "{ref}"

[[tenants.targets]]
name = "graph"
kind = "graph"
tenant_id = "t"
client_id = "app"
client_secret = "{ref}"

[[tenants.targets]]
name = "ews-cert"
kind = "ews"
endpoint = "https://mail.acme.example/EWS/Exchange.asmx"
auth = "oauth2"
tenant_id = "t"
client_id = "cert-app"
client_certificate = "{ref}"

[[tenants.targets]]
name = "graph-cert"
kind = "graph"
tenant_id = "t"
client_id = "cert-app"
client_certificate = "{ref}"

[[tenants.targets]]
name = "smtp"
kind = "smtp"
host = "mx.acme.example"
username = "relay"
password = "{ref}"

[[tenants.sources]]
id = "pop"
kind = "pop3"
mode = "personal"
host = "pop.isp.example"
username = "alice"
auth = {{ kind = "password", password = "{ref}" }}
deliver_to = "alice@acme.example"

[[tenants.sources]]
id = "imap"
kind = "imap"
mode = "global"
host = "imap.isp.example"
username = "catchall"
auth = {{ kind = "oauth2", token_url = "https://idp.example/t", client_id = "a", client_secret = "{ref}" }}
"""
    path = tmp_path / "mailferry.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _mailferry(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailferry", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MF_ABSENT")},
    )


def test_read_only_commands_run_without_the_secrets_and_roles_refuse_to_start(
    tmp_path: Path, kafka_config: KafkaConfig
) -> None:
    missing = f"MF_ABSENT_{uuid.uuid4().hex[:8].upper()}"
    path = _config(tmp_path, kafka_config, missing)
    seeded = secret_values(load_config(path, check_secrets=False))
    given = {"KafkaConfig.sasl_password", "KafkaConfig.ssl_key_password"}  # Kafka access is given
    assert set(seeded) - given == secret_fields() - given

    ensure = _mailferry(path, "topics", "ensure")
    assert ensure.returncode == 0, ensure.stderr
    for command in (("topics", "list"), ("status",), ("dlq", "list"), ("mailboxes", "sync")):
        done = _mailferry(path, *command)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        assert missing not in done.stdout + done.stderr
    trace = _mailferry(path, "audit", "trace", "<nothing@acme.example>")
    assert "no audit events for <nothing@acme.example>" in trace.stdout, trace.stderr
    assert missing not in trace.stdout + trace.stderr

    for role in ("fetch", "deliver", "stream", "run"):
        done = _mailferry(path, role)
        assert done.returncode == 2, f"{role}: {done.stdout}{done.stderr}"
        line = 1 + path.read_text().splitlines().index(f'trace_key = "env:{missing}"')
        assert (
            f"mailferry.toml:{line}: stream.trace_key: secret env:{missing}: environment variable"
            in done.stderr
        )
        assert "tenants[0].sources[0].auth.password" in done.stderr
