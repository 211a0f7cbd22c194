"""The demo: the whole pipeline on this machine, with nothing external.

A throwaway Dovecot on loopback holds two source mailboxes seeded with the sample mail
(``mailferry_testkit.sample_mail``): a personal POP3 box for tenant ``acme`` and a global
IMAP catch-all for tenant ``globex``. Tenant acme delivers into the EWS EMULATOR, tenant
globex into a Maildir. The real pipeline runs in between: embedded Kafka, ``mailferry
run``'s supervised roles. The demo waits until every expected (message, recipient) has
arrived, then prints a per-mailbox summary and one audit trace.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailferry.audit import read_events
from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.targets.maildir import mailbox_dirname
from mailferry.kafka.scan import scan_topic
from mailferry.kafka.topics import AUDIT, full_name
from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.sample_mail import SampleMessage, catchall_mailbox, personal_mailbox

ACME_USERS = ("alice@acme.example", "postmaster@acme.example")
GLOBEX_DEFAULT = "it@globex.example"
GLOBEX_USERS = ("bob@globex.example", "carol@globex.example", "dave@globex.example", GLOBEX_DEFAULT)
SERVICE_ACCOUNT, SERVICE_PASSWORD = "svc-mailferry@acme.example", "demo-service-password"
GLOBEX_ACCOUNT, GLOBEX_PASSWORD = "svc-mailferry@globex.example", "globex-service-password"


@dataclass
class DemoEnvironment:
    """Dovecot + EWS emulator + a config file pointing the pipeline at them."""

    root: Path
    globex_target: Literal["maildir", "ews"] = "maildir"
    dovecot: DovecotServer = field(init=False)
    ews: EwsEmulator = field(init=False)
    personal: list[SampleMessage] = field(init=False)
    catchall: list[SampleMessage] = field(init=False)
    config_path: Path = field(init=False)

    def start(
        self,
        *,
        poll_interval: str = "1s",
        large_attachment_bytes: int = 2 * 1024 * 1024,
        kafka: KafkaConfig | None = None,
    ) -> None:
        """Start the servers and write the config; ``kafka`` None means the embedded broker."""
        self.dovecot = DovecotServer(self.root / "dovecot")
        self.dovecot.start()
        self.dovecot.add_user("alice.private", "alice-pop3-password")
        self.dovecot.add_user("catchall", "catchall-imap-password")
        self.personal = personal_mailbox("alice@acme.example")
        self.catchall = catchall_mailbox(
            "globex.example", GLOBEX_DEFAULT, large_attachment_bytes=large_attachment_bytes
        )
        self.dovecot.seed("alice.private", [m.data for m in self.personal])
        self.dovecot.seed("catchall", [m.data for m in self.catchall])
        self.ews = EwsEmulator().start()
        self.ews.add_account(SERVICE_ACCOUNT, SERVICE_PASSWORD)
        for address in ACME_USERS:
            self.ews.add_mailbox(address)
        if self.globex_target == "ews":
            self.ews.add_account(GLOBEX_ACCOUNT, GLOBEX_PASSWORD)
            for address in GLOBEX_USERS:
                self.ews.add_mailbox(address)
        self.config_path = self.root / "mailferry-demo.toml"
        self.config_path.write_text(self.config_text(poll_interval, kafka), encoding="utf-8")

    def config_text(self, poll_interval: str, kafka: KafkaConfig | None) -> str:
        d = self.dovecot
        kafka_table = (
            kafka.connection_toml()
            if kafka
            else '[kafka]\ntopic_prefix = "mailferry"\n\n[kafka.embedded]\nport = 0\n'
        )
        return f"""\
# Written by the mailferry demo: two tenants against a local Dovecot, the EWS EMULATOR and a Maildir.
allow_plaintext_secrets = true   # demo passwords; real configs use env: or file: references
state_dir = "{self.root / "state"}"

{kafka_table}
[kafka.topics.defaults]
partitions = 3

[retry]
tiers = ["2s", "10s", "1m", "10m"]

[stream]
web_port = 0

[[tenants]]
id = "acme"
accepted_domains = ["acme.example"]
default_mailbox = "postmaster@acme.example"
default_target = "exchange"

[[tenants.targets]]
name = "exchange"
kind = "ews"
endpoint = "{self.ews.url}"
version = "Exchange2016"
auth = "basic"
username = "{SERVICE_ACCOUNT}"
password = "{SERVICE_PASSWORD}"
impersonation = true

[[tenants.sources]]
id = "alice-isp"
kind = "pop3"
mode = "personal"
host = "127.0.0.1"
port = {d.pop3s_port}
tls = "implicit"
ca_file = "{d.ca_file}"
username = "alice.private"
auth = {{ kind = "password", password = "alice-pop3-password" }}
deliver_to = "alice@acme.example"
poll_interval = "{poll_interval}"

[[tenants]]
id = "globex"
accepted_domains = ["globex.example"]
default_mailbox = "{GLOBEX_DEFAULT}"
default_target = "archive"

{self._globex_target()}

[[tenants.sources]]
id = "globex-catchall"
kind = "imap"
mode = "global"
host = "127.0.0.1"
port = {d.imap_port}
tls = "starttls"
ca_file = "{d.ca_file}"
username = "catchall"
auth = {{ kind = "password", password = "catchall-imap-password" }}
envelope_headers = ["Delivered-To", "X-Original-To"]
poll_interval = "{poll_interval}"
"""

    def _globex_target(self) -> str:
        if self.globex_target == "maildir":
            return f'[[tenants.targets]]\nname = "archive"\nkind = "maildir"\npath = "{self.maildir_root}"\n'
        return (
            f'[[tenants.targets]]\nname = "archive"\nkind = "ews"\nendpoint = "{self.ews.url}"\n'
            f'version = "Exchange2016"\nauth = "basic"\nusername = "{GLOBEX_ACCOUNT}"\n'
            f'password = "{GLOBEX_PASSWORD}"\nimpersonation = true\n'
        )

    @property
    def maildir_root(self) -> Path:
        return self.root / "maildir"

    def expected(self) -> Counter[str]:
        """How many messages each mailbox must end up with."""
        wanted: Counter[str] = Counter()
        for message in self.personal + self.catchall:
            wanted.update(message.expected)
        return wanted

    def delivered(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for address in ACME_USERS + (GLOBEX_USERS if self.globex_target == "ews" else ()):
            found[address] = len(self.ews.items(address))
        for address in self.expected():
            folder = self.maildir_root / mailbox_dirname(address)
            found[address] += sum(
                1 for sub in ("new", "cur") if (folder / sub).is_dir() for _ in (folder / sub).iterdir()
            )
        return +found

    def wait(self, timeout: float, on_progress: Callable[[int, int], None]) -> bool:
        want = self.expected()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            have = self.delivered()
            on_progress(sum(min(have[k], v) for k, v in want.items()), sum(want.values()))
            if all(have[k] >= v for k, v in want.items()):
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        for stop in (getattr(self, "ews", None), getattr(self, "dovecot", None)):
            if stop is not None:
                stop.stop()


def reset(root: Path) -> None:
    """A demo run starts from nothing, so its summary is about this run only."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


def mailbox_summary(config: MailferryConfig, servers: list[str]) -> dict[str, Counter[str]]:
    """Per source mailbox: how many events of each kind the audit topic holds."""
    by_sha: dict[str, str] = {}
    counts: dict[str, Counter[str]] = {}
    records = scan_topic(config.kafka, servers, full_name(config.kafka, AUDIT))
    events = [event for record in records for event in read_events(record)]
    for event in events:
        if event["mailbox_id"] and event["sha256"]:
            by_sha.setdefault(event["sha256"], f"{event['tenant']}/{event['mailbox_id']}")
    for event in events:
        mailbox = (
            f"{event['tenant']}/{event['mailbox_id']}"
            if event["mailbox_id"]
            else by_sha.get(event["sha256"] or "", f"{event['tenant']}/?")
        )
        counts.setdefault(mailbox, Counter())[event["event"]] += 1
    return counts
