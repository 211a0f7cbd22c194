"""No secret leaves the process: every secret field seeded with a unique value, the whole pipeline run,
and every log, command output, topic record and file of the broker's data folder searched for them.

Real parts: ``mailferry run`` with its embedded Kafka broker, a real Dovecot (passwords and
XOAUTH2/OAUTHBEARER checked against a loopback OAuth server), the EWS EMULATOR (basic and app-only
OAuth), the GRAPH EMULATOR, aiosmtpd with AUTH, a real s3proxy as the blob store (every message
goes through it). The config holds every secret in clear
(``allow_plaintext_secrets``), the case where a value is most easily copied somewhere.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import boto3
import pytest
from kafka import TopicPartition

from mailferry.config import MailferryConfig, load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.clients import new_consumer
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator
from mailferry_testkit.identity_emulator import app_certificate
from mailferry_testkit.s3proxy import S3Proxy
from tests.deliver.smtp_sink import SmtpSink, make_test_ca
from tests.fetch.helpers import sample
from tests.fetch.oauth_server import OAuthServer
from tests.foundation.test_secrets import secret_fields, secret_values

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _secret(name: str) -> str:
    return f"Sx{name}{uuid.uuid4().hex}"


@dataclass
class Run:
    root: Path
    config: MailferryConfig
    secrets: dict[str, str]
    texts: dict[str, bytes] = field(default_factory=dict)  # where -> what was captured there
    modes: dict[str, int] = field(default_factory=dict)  # every path under the state folder
    s3_objects: int = 0


def _config_text(
    root: Path,
    s: dict[str, str],
    d: DovecotServer,
    o: OAuthServer,
    ews: EwsEmulator,
    graph: GraphEmulator,
    smtp: SmtpSink,
    ca_file: Path,
    s3: S3Proxy,
) -> str:
    def source(sid: str, kind: str, port: int, tls: str, deliver_to: str, auth: str) -> str:
        return (
            f'[[tenants.sources]]\nid = "{sid}"\nkind = "{kind}"\nmode = "personal"\nhost = "127.0.0.1"\n'
            f'port = {port}\ntls = "{tls}"\nca_file = "{d.ca_file}"\nusername = "{sid}"\n'
            f'auth = {auth}\ndeliver_to = "{deliver_to}"\npoll_interval = "1s"\n'
        )

    def tenant(tid: str, domain: str) -> str:
        return (
            f'[[tenants]]\nid = "{tid}"\naccepted_domains = ["{domain}"]\n'
            f'default_mailbox = "postmaster@{domain}"\ndefault_target = "out"\n'
        )

    def oauth(client: str, secret: str, mechanism: str) -> str:
        return (
            f'{{ kind = "oauth2", mechanism = "{mechanism}", token_url = "{o.url}/token", '
            f'client_id = "{client}", client_secret = "{secret}", scope = "mail" }}'
        )

    return f"""\
allow_plaintext_secrets = true
state_dir = "{root / "state"}"

[kafka]
topic_prefix = "sec"
sasl_mechanism = "PLAIN"
sasl_username = "mailferry"
sasl_password = "{s["kafka"]}"
ssl_key_password = "{s["kafka-key"]}"

[kafka.embedded]
port = 0

[kafka.topics.defaults]
partitions = 2

[retry]
tiers = ["2s", "10s"]

[blob_store]
kind = "s3"
inline_threshold = 64

[blob_store.s3]
bucket = "mail"
endpoint_url = "{s3.endpoint}"
access_key_id = "{s["s3-key-id"]}"
secret_access_key = "{s["s3-secret"]}"

[stream]
web_port = 0
trace_key = "{s["trace-key"]}"

[console]
token = "{s["console-token"]}"
password_hash = "{s["console-hash"]}"

{tenant("acme", "acme.example")}
[[tenants.targets]]
name = "out"
kind = "ews"
endpoint = "{ews.url}"
version = "Exchange2016"
auth = "basic"
username = "svc-acme"
password = "{s["ews-password"]}"

{
        source(
            "s-pop",
            "pop3",
            d.pop3s_port,
            "implicit",
            "alice@acme.example",
            f'{{ kind = "password", password = "{s["pop3"]}" }}',
        )
    }
{
        source(
            "s-wrong",
            "pop3",
            d.pop3s_port,
            "implicit",
            "alice@acme.example",
            f'{{ kind = "password", password = "{s["wrong-pop3"]}" }}',
        )
    }
{tenant("globex", "globex.example")}
[[tenants.targets]]
name = "out"
kind = "ews"
endpoint = "{ews.url}"
version = "Exchange2016"
auth = "oauth2"
tenant_id = "globex-tenant"
client_id = "globex-app"
client_secret = "{s["ews-client"]}"
authority = "{ews.authority("globex-tenant")}"
ca_file = "{ews.identity_ca_file}"

[[tenants.targets]]
name = "out-cert"
kind = "ews"
endpoint = "{ews.url}"
version = "Exchange2016"
auth = "oauth2"
tenant_id = "globex-tenant"
client_id = "globex-cert-app"
client_certificate = '''{s["ews-cert"]}'''
authority = "{ews.authority("globex-tenant")}"
ca_file = "{ews.identity_ca_file}"

{
        source(
            "s-imap",
            "imap",
            d.imap_port,
            "starttls",
            "bob@globex.example",
            f'{{ kind = "password", password = "{s["imap"]}" }}',
        )
    }
{tenant("initech", "initech.example")}
[[tenants.targets]]
name = "out"
kind = "graph"
base_url = "{graph.base_url}"
authority = "{graph.authority("initech-tenant")}"
ca_file = "{graph.identity_ca_file}"
tenant_id = "initech-tenant"
client_id = "initech-app"
client_secret = "{s["graph-client"]}"

[[tenants.targets]]
name = "out-cert"
kind = "graph"
base_url = "{graph.base_url}"
authority = "{graph.authority("initech-tenant")}"
ca_file = "{graph.identity_ca_file}"
tenant_id = "initech-tenant"
client_id = "initech-cert-app"
client_certificate = '''{s["graph-cert"]}'''

{
        source(
            "s-oauth-imap",
            "imap",
            d.imaps_port,
            "implicit",
            "carol@initech.example",
            oauth("imap-app", s["imap-oauth"], "XOAUTH2"),
        )
    }
{tenant("umbrella", "umbrella.example")}
[[tenants.targets]]
name = "out"
kind = "smtp"
host = "127.0.0.1"
port = {smtp.port}
tls = "starttls"
ca_file = "{ca_file}"
username = "relay"
password = "{s["smtp"]}"

{
        source(
            "s-oauth-pop",
            "pop3",
            d.pop3s_port,
            "implicit",
            "dave@umbrella.example",
            oauth("pop-app", s["pop3-oauth"], "OAUTHBEARER"),
        )
    }
"""


def _wait(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n" + log.read_text(errors="replace")[-4000:])


def _stopped_for_bad_credentials(state: Path) -> bool:
    for path in (state / "status").glob("fetch*.json"):
        try:
            boxes = json.loads(path.read_text()).get("mailboxes", {})
        except (OSError, json.JSONDecodeError):
            continue
        if boxes.get("acme/s-wrong", {}).get("reason_code") == "bad-credentials":
            return True
    return False


def _every_record(kafka: KafkaConfig) -> bytes:
    """Keys, values and headers of every record of every topic on the broker, as one blob."""
    consumer = new_consumer(kafka, list(kafka.bootstrap_servers), isolation_level="read_uncommitted")
    try:
        partitions = [
            TopicPartition(t, p) for t in consumer.topics() for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    out += (rec.key or b"") + b"\n" + (rec.value or b"") + b"\n"
                    out += b"".join(k.encode() + b"=" + (v or b"") for k, v in rec.headers or ())
        assert all(consumer.position(tp) >= ends[tp] for tp in partitions), "could not read every topic"
        return bytes(out)
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = Path(tmp_path_factory.mktemp("secrets"))
    s = {
        name: _secret(name.replace("-", ""))
        for name in (
            "kafka",
            "kafka-key",
            "pop3",
            "wrong-pop3",
            "imap",
            "imap-oauth",
            "pop3-oauth",
            "ews-password",
            "ews-client",
            "graph-client",
            "smtp",
            "trace-key",
            "s3-key-id",
            "s3-secret",
            "console-token",
            "console-hash",
        )
    }
    certificates = {name: app_certificate(name) for name in ("ews-cert", "graph-cert")}
    s |= {name: key + cert for name, (key, cert, _) in certificates.items()}
    oauth = OAuthServer()
    dovecot = DovecotServer(root / "dovecot", oauth2_introspection_url=f"{oauth.url}/introspect").start()
    for user, password in (
        ("s-pop", s["pop3"]),
        ("s-imap", s["imap"]),
        ("s-oauth-imap", "unused-password"),
        ("s-oauth-pop", "unused-password"),
    ):
        dovecot.add_user(user, password)
    dovecot.add_user("s-wrong", "the-right-one")
    for index, user in enumerate(("s-pop", "s-imap", "s-oauth-imap", "s-oauth-pop")):
        dovecot.seed(user, [sample(10 * index + n) for n in range(2)])
    oauth.clients["imap-app"] = (s["imap-oauth"], "s-oauth-imap")
    oauth.clients["pop-app"] = (s["pop3-oauth"], "s-oauth-pop")
    ews = EwsEmulator().start()
    ews.add_account("svc-acme", s["ews-password"])
    ews.add_account("globex-app-user", "unused-ews-password")
    ews.add_app("globex-app", s["ews-client"], "globex-tenant", "globex-app-user")
    ews_cert = certificates["ews-cert"][1].encode()
    ews.add_app("globex-cert-app", None, "globex-tenant", "globex-app-user", certificate=ews_cert)
    for address in (
        "alice@acme.example",
        "postmaster@acme.example",
        "bob@globex.example",
        "postmaster@globex.example",
    ):
        ews.add_mailbox(address)
    graph = GraphEmulator().start()
    graph.add_app("initech-app", s["graph-client"], "initech-tenant")
    graph.add_app(
        "initech-cert-app", None, "initech-tenant", certificate=certificates["graph-cert"][1].encode()
    )
    graph.add_mailbox("carol@initech.example")
    graph.add_mailbox("postmaster@initech.example")
    ca = make_test_ca(root / "smtp-ca")
    smtp = SmtpSink(ca, users={"relay": s["smtp"]}).__enter__()
    s3 = S3Proxy(root / "s3proxy")
    s3.access_key, s3.secret_key = s["s3-key-id"], s["s3-secret"]
    s3.start()
    boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ).create_bucket(Bucket="mail")
    config_path = root / "mailferry.toml"
    config_path.write_text(
        _config_text(root, s, dovecot, oauth, ews, graph, smtp, ca.ca_file, s3), encoding="utf-8"
    )
    config = load_config(config_path)
    result = Run(root, config, s)
    # every role logs at DEBUG, libraries included (they log request headers and bodies there);
    # the EWS emulator's token URL is loopback http, which oauthlib refuses without this
    env = os.environ | {"MAILFERRY_LOG_LEVEL": "debug", "OAUTHLIB_INSECURE_TRANSPORT": "1"}

    def mailferry(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "mailferry", "-c", str(config_path), *args],
            capture_output=True,
            timeout=180,
            env=env,
            check=False,
        )
        result.texts[f"mailferry {' '.join(args)}"] = done.stdout + done.stderr

    log = root / "run.log"
    job = subprocess.Popen(
        [sys.executable, "-m", "mailferry", "-c", str(config_path), "run"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        delivered = lambda: (  # noqa: E731
            len(ews.items("alice@acme.example")) == 2
            and len(ews.items("bob@globex.example")) == 2
            and len(graph.items("carol@initech.example")) == 2
            and smtp.handler.count() == 2
        )
        _wait(delivered, 300, "every tenant's two messages", log)
        _wait(lambda: _stopped_for_bad_credentials(config.state_dir), 60, "the wrong password reported", log)
        for command in (
            ("status",),
            ("topics", "list"),
            ("dlq", "list"),
            ("audit", "trace", "<m0@fetch.test>"),
            ("mailboxes", "sync"),
            ("config", "validate", str(config_path)),
        ):
            mailferry(*command)
        broker = EmbeddedBroker(config.kafka.embedded, config.kafka_state_dir)
        assert broker.running_state() is not None
        result.texts["every topic's records"] = _every_record(broker.client_config())
    finally:
        job.send_signal(signal.SIGINT)
        try:
            job.wait(timeout=120)
        except subprocess.TimeoutExpired:
            job.kill()
        smtp.__exit__()
        s3.stop()
        graph.stop()
        ews.stop()
        dovecot.remove()
        oauth.close()
    result.s3_objects = sum(1 for p in (root / "s3proxy" / "data").rglob("*") if p.is_file())
    result.texts["mailferry run"] = log.read_bytes()
    for path in sorted(config.state_dir.rglob("*")):  # role logs, status, blobs, the broker's data folder
        result.modes[str(path)] = path.lstat().st_mode
        if path.is_file():
            result.texts[str(path)] = path.read_bytes()
    yield result


def test_every_secret_field_is_seeded(run: Run) -> None:
    assert run.s3_objects > 0, "the S3 credentials were used"
    found = secret_values(run.config)
    assert set(found) == secret_fields()
    assert {ref.reveal() for refs in found.values() for ref in refs} == set(run.secrets.values())


def test_no_secret_in_any_log_output_record_or_broker_file(run: Run) -> None:
    assert "every topic's records" in run.texts and any("kafka" in where for where in run.texts)
    assert any(where.endswith(".log") and "/logs/" in where for where in run.texts), "role logs captured"
    hits = [
        f"{name} in {where}"
        for where, data in run.texts.items()
        for name, value in run.secrets.items()
        if _holds(data, value)
    ]
    assert hits == []


_BASE64 = re.compile(rb"[A-Za-z0-9+/_-]{12,}")


def _holds(data: bytes, value: str) -> bool:
    """``value`` in clear, URL-encoded, or inside any base64 run (``Basic base64(user:password)``);
    for a PEM credential, any line of its private key."""
    if "PRIVATE KEY-----" in value:
        body = value.split("PRIVATE KEY-----")[1].split("-----END")[0]
        return any(_holds(data, line) for line in body.split() if len(line) >= 32)
    wanted = value.encode()
    if wanted in data or quote_plus(value).encode() in data:
        return True
    for token in _BASE64.findall(data):
        for offset in range(4):  # the run may start mid-quantum of a longer encoding
            chunk = token[offset:]
            chunk = chunk[: len(chunk) // 4 * 4]
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    if wanted in decode(chunk):
                        return True
                except ValueError:
                    continue
    return False


def test_what_mailferry_wrote_is_readable_by_its_user_only(run: Run) -> None:
    """Logs, status, blobs and the embedded broker's data hold mail: 0600 files, 0700 folders."""
    assert len(run.modes) > 20
    shared = sorted(f"{oct(mode & 0o777)} {path}" for path, mode in run.modes.items() if mode & 0o077)
    assert shared == []
