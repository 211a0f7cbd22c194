"""Chaos suite: the whole pipeline under ``kill -9``, counting every (message, recipient).

One command starts a real Dovecot, a real embedded Kafka broker, two worker processes of each
role (``python -m mailferry -c CONFIG fetch|stream|deliver``, supervised and restarted as
``mailferry run`` does) and four targets at once, one tenant each: the EWS EMULATOR, the
GRAPH EMULATOR (neither is Microsoft's), an SMTP sink (aiosmtpd) and a Maildir. While the
corpus drains it ``kill -9``s role processes (the supervisor restarts them) and the broker
(started again after ``--broker-down`` seconds). Faults are spread by progress (share of
deliveries seen), so they land during the run however fast the machine is. At the end it
prints lost / duplicated per target, and each duplicate charged to the last fault before
it was first seen.

    .venv/bin/python benchmarks/chaos.py                       # 2,000 messages, 12 role kills, 1 broker kill
    .venv/bin/python benchmarks/chaos.py --messages 100 --kills 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))

from corpus import build_message
from kafka.errors import KafkaError
from mailferry.consumers.maildir import mailbox_dirname
from sink import SmtpSink

from mailferry.config import MailferryConfig, load_config
from mailferry.config.kafka import EmbeddedKafka
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.embedded import EmbeddedBroker
from mailferry.kafka.topics import topic_specs
from mailferry.supervisor import Role, Supervisor
from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

TARGETS = ("ews", "graph", "smtp", "maildir")
ROLES = ("fetch", "stream", "deliver")
WORKERS = 2
BIG = 1_000_000  # a "large" message is 1-20 MB
EWS_ACCOUNT, EWS_PASSWORD = "svc-chaos", "chaos-ews-password"
GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT = "chaos-app", "chaos-graph-secret", "chaos-tenant"
_BENCH_ID = re.compile(rb"^X-Bench-Id:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


def domain(target: str) -> str:
    return f"{target}.chaos.example"


def users(target: str) -> list[tuple[str, str]]:
    """Two source mailboxes per tenant, one POP3 and one IMAP: (Dovecot user, protocol)."""
    return [(f"{target}-pop", "pop3"), (f"{target}-imap", "imap")]


def address(user: str) -> str:
    return f"{user.split('-')[1]}@{domain(user.split('-')[0])}"


@dataclass(frozen=True)
class Fault:
    at_share: float  # of the expected deliveries seen when it fires
    kind: str  # a role name or "broker"


def plan(kills: int, broker_kills: int, rng: random.Random) -> list[Fault]:
    shares = sorted(rng.uniform(0.05, 0.9) for _ in range(kills + broker_kills))
    kinds = [ROLES[i % len(ROLES)] for i in range(kills)] + ["broker"] * broker_kills
    rng.shuffle(kinds)
    return [Fault(s, k) for s, k in zip(shares, kinds, strict=True)]


def seed_corpus(
    server: DovecotServer, messages: int, large: int, rng: random.Random
) -> Counter[tuple[str, str]]:
    """Seed every mailbox; returns the (bench id, recipient address) pairs expected once each."""
    boxes = [u for t in TARGETS for u, _ in users(t)]
    big = set(rng.sample(range(messages), min(large, messages)))
    expected: Counter[tuple[str, str]] = Counter()
    batches: dict[str, list[bytes]] = {b: [] for b in boxes}
    for index in range(messages):
        box = boxes[index % len(boxes)]
        size = rng.randint(BIG, 20 * BIG) if index in big else rng.randint(2_000, 20_000)
        bench_id = f"chaos-{index:06d}"
        to = address(box)
        batches[box].append(build_message(rng, bench_id=bench_id, to=to, envelope=None, size=size))
        expected[(bench_id, to)] += 1
    for box, data in batches.items():
        server.seed(box, data)
    return expected


def config_text(work: Path, broker: EmbeddedBroker, server: DovecotServer, urls: dict[str, str]) -> str:
    login = broker.credentials.client_settings()  # the embedded broker takes SASL/SCRAM clients only
    target_lines = {
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
            f'token_url = "{urls["graph-token"]}"',
            f'tenant_id = "{GRAPH_TENANT}"',
            f'client_id = "{GRAPH_APP}"',
            f'client_secret = "{GRAPH_SECRET}"',
        ],
        "smtp": ['kind = "smtp"', 'host = "127.0.0.1"', f"port = {urls['smtp']}", 'tls = "none"'],
        "maildir": ['kind = "maildir"', f'path = "{work / "maildir"}"'],
    }
    lines = [
        "allow_plaintext_secrets = true  # chaos-suite passwords for loopback emulators",
        f'state_dir = "{work / "state"}"',
        "",
        "[kafka]",
        f'bootstrap_servers = ["{broker.address}"]',
        *(f'{key} = "{getattr(value, "reference", value)}"' for key, value in login.items()),
        'topic_prefix = "chaos"',
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
            *target_lines[target],
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


@dataclass
class Targets:
    """The four targets and a count of what each holds, keyed (bench id, recipient address)."""

    work: Path
    ews: EwsEmulator = field(init=False)
    graph: GraphEmulator = field(init=False)
    smtp: SmtpSink = field(init=False)
    _maildir_seen: dict[Path, str | None] = field(default_factory=dict)

    def start(self) -> dict[str, str]:
        self.ews = EwsEmulator(max_message_size=200 * BIG).start()
        self.ews.store.keep_bodies = False
        self.ews.add_account(EWS_ACCOUNT, EWS_PASSWORD)
        self.graph = GraphEmulator(max_message_size=200 * BIG).start()
        self.graph.add_app(GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT)
        for user, _ in users("ews"):
            self.ews.add_mailbox(address(user))
        for user, _ in users("graph"):
            self.graph.add_mailbox(address(user))
        for target in ("ews", "graph"):
            mailbox = f"postmaster@{domain(target)}"
            (self.ews if target == "ews" else self.graph).add_mailbox(mailbox)
        self.smtp = SmtpSink().start()
        return {
            "ews": self.ews.url,
            "graph": self.graph.base_url,
            "graph-token": self.graph.token_url(GRAPH_TENANT),
            "smtp": str(self.smtp.port),
        }

    def stop(self) -> None:
        self.ews.stop()
        self.graph.stop()
        self.smtp.stop()

    def counts(self) -> dict[str, Counter[tuple[str, str]]]:
        found: dict[str, Counter[tuple[str, str]]] = {t: Counter() for t in TARGETS}
        for user, _ in users("ews"):
            for ews_item in self.ews.items(address(user)):
                found["ews"][(_bench(ews_item.internet_message_id), address(user))] += 1
        for user, _ in users("graph"):
            for graph_item in self.graph.items(address(user)):
                found["graph"][(_bench(graph_item.internet_message_id), address(user))] += 1
        for arrival in self.smtp.arrivals():
            for rcpt in arrival.recipients:
                found["smtp"][(arrival.bench_id, rcpt.lower())] += 1
        for user, _ in users("maildir"):
            folder = self.work / "maildir" / mailbox_dirname(address(user))
            for sub in ("new", "cur"):
                for path in (folder / sub).glob("*") if (folder / sub).is_dir() else ():
                    key = path.name.split(":", 1)[0]
                    cached = self._maildir_seen.get(folder / key)
                    if cached is None:
                        head = path.open("rb").read(64 * 1024)
                        hit = _BENCH_ID.search(head)
                        cached = hit.group(1).decode() if hit else "?"
                        self._maildir_seen[folder / key] = cached
                    found["maildir"][(cached, address(user))] += 1
        return found


def _bench(message_id: str | None) -> str:
    return (message_id or "?").strip().strip("<>").split("@", 1)[0]


@dataclass
class Report:
    expected: int
    seconds: float  # until every fault fired and every pair arrived
    all_arrived: float | None  # when every expected pair was first present
    faults: list[str]
    lost: dict[str, list[str]]
    duplicated: dict[str, list[str]]
    dup_by_fault: dict[str, Counter[str]]
    completed: bool

    def table(self) -> str:
        rows = [f"{'target':<10}{'expected':>10}{'lost':>8}{'duplicated':>12}"]
        per_target = self.expected // len(TARGETS)
        for t in TARGETS:
            rows.append(f"{t:<10}{per_target:>10}{len(self.lost[t]):>8}{len(self.duplicated[t]):>12}")
        rows += ["", "duplicates by the last fault before they appeared:"]
        rows.append(f"{'fault':<10}" + "".join(f"{t:>9}" for t in TARGETS))
        for kind in (*ROLES, "broker", "none"):
            rows.append(f"{kind:<10}" + "".join(f"{self.dup_by_fault[t][kind]:>9}" for t in TARGETS))
        return "\n".join(rows)


def run(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="mailferry-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(EmbeddedKafka(port=0), work / "kafka")
    broker.start()
    server = DovecotServer(work / "dovecot").start()
    targets = Targets(work)
    supervisor: Supervisor | None = None
    try:
        for target in TARGETS:
            for user, _ in users(target):
                server.add_user(user, f"pw-{user}")
        expected = seed_corpus(server, args.messages, args.large, rng)
        config_path = work / "chaos.toml"
        config_path.write_text(config_text(work, broker, server, targets.start()), encoding="utf-8")
        config = load_config(config_path)
        _create_topics(config)
        mailferry = [sys.executable, "-m", "mailferry", "-c", str(config_path)]
        import subprocess

        subprocess.run([*mailferry, "mailboxes", "sync"], check=False, capture_output=True)
        roles = [Role(f"{r}-{i}", [*mailferry, r]) for r in ROLES for i in range(1, WORKERS + 1)]
        supervisor = Supervisor(roles, log_dir=work / "logs", report=lambda m: print(f"  {m}", flush=True))
        faults = plan(args.kills, args.broker_kills, rng)
        fired: list[tuple[float, str]] = []
        first_dup: dict[str, dict[tuple[str, str], float]] = {t: {} for t in TARGETS}
        total = sum(expected.values())
        began = time.monotonic()
        supervisor.start()
        broker_back_at: float | None = None
        done_since: float | None = None
        all_arrived: float | None = None
        while time.monotonic() - began < args.timeout:
            supervisor.check()
            now = time.monotonic()
            if broker_back_at is not None and now >= broker_back_at:
                broker.start()
                print(f"  {now - began:6.1f}s broker restarted", flush=True)
                broker_back_at = None
            counts = targets.counts()
            for t in TARGETS:
                for key, n in counts[t].items():
                    if n > 1:
                        first_dup[t].setdefault(key, now)
            seen = sum(min(n, expected[k]) for t in TARGETS for k, n in counts[t].items() if k in expected)
            spaced = not fired or now - fired[-1][0] >= args.gap
            if faults and spaced and seen >= faults[0].at_share * total and broker_back_at is None:
                fault = faults.pop(0)
                fired.append((now, fault.kind))
                victim = _kill(fault.kind, supervisor, broker, rng)
                print(f"  {now - began:6.1f}s {seen}/{total} delivered: kill -9 {victim}", flush=True)
                if fault.kind == "broker":
                    broker_back_at = now + args.broker_down
            if seen >= total and all_arrived is None:
                all_arrived = now - began
            if seen >= total and not faults and broker_back_at is None:
                done_since = done_since or now
                if now - done_since >= args.settle:
                    break
            else:
                done_since = None
            time.sleep(0.5)
        seconds = (done_since or time.monotonic()) - began
        final = targets.counts()
        lost = {
            t: sorted(f"{b} {r}" for (b, r) in expected if domain(t) in r and final[t][(b, r)] == 0)
            for t in TARGETS
        }
        duplicated = {t: sorted(f"{b} {r} x{n}" for (b, r), n in final[t].items() if n > 1) for t in TARGETS}
        dup_by_fault = {t: Counter(_blame(when, fired) for when in first_dup[t].values()) for t in TARGETS}
        fault_log = [f"{when - began:.1f}s kill -9 {kind}" for when, kind in fired]
        complete = not any(lost.values())
        return Report(total, seconds, all_arrived, fault_log, lost, duplicated, dup_by_fault, complete)
    finally:
        if supervisor is not None:
            supervisor.stop()
        targets_stop = getattr(targets, "ews", None)
        if targets_stop is not None:
            targets.stop()
        server.remove()
        broker.stop()
        print(f"  work folder (config, role logs): {work}", flush=True)


def _create_topics(config: MailferryConfig, attempts: int = 5) -> None:
    """As ``mailferry run`` does; a broker that just started may not take a client at once."""
    for attempt in range(1, attempts + 1):
        try:
            admin = new_admin(config.kafka, list(config.kafka.bootstrap_servers))
            try:
                ensure_topics(admin, topic_specs(config.kafka, len(config.retry.tiers)))
            finally:
                admin.close()
            return
        except KafkaError:
            if attempt == attempts:
                raise
            time.sleep(3)


def _kill(kind: str, supervisor: Supervisor, broker: EmbeddedBroker, rng: random.Random) -> str:
    if kind == "broker":
        state = broker.running_state()
        if state is not None and state.pid is not None:
            os.killpg(state.pid, signal.SIGKILL)
            return f"broker (pid {state.pid})"
        return "broker (was not running)"
    alive = [r for r in supervisor.roles if r.name.startswith(kind) and r.process is not None]
    if not alive:
        return f"{kind} (none running)"
    role = rng.choice(alive)
    assert role.process is not None
    os.killpg(role.process.pid, signal.SIGKILL)
    return f"{role.name} (pid {role.process.pid})"


def _blame(when: float, fired: list[tuple[float, str]]) -> str:
    before = [kind for at, kind in fired if at <= when]
    return before[-1] if before else "none"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--large", type=int, default=12, help="how many of them are 1-20 MB")
    parser.add_argument(
        "--kills", type=int, default=12, help="kill -9 of role processes (fetch/stream/deliver in turn)"
    )
    parser.add_argument("--broker-kills", type=int, default=1)
    parser.add_argument("--broker-down", type=float, default=10.0, help="seconds before the broker restarts")
    parser.add_argument("--gap", type=float, default=2.0, help="at least this many seconds between faults")
    parser.add_argument("--settle", type=float, default=15.0, help="quiet seconds after the last delivery")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run's cleanup stops roles, broker, Dovecot
    report = run(args)
    size = f"{args.messages} messages ({args.large} of 1-20 MB)"
    arrived = "never" if report.all_arrived is None else f"{report.all_arrived:.0f} s"
    print(f"\n{size}, {len(report.faults)} faults; all arrived after {arrived}, run {report.seconds:.0f} s")
    print("faults: " + "; ".join(report.faults))
    print(report.table())
    for t in TARGETS:
        for kind, items in (("lost", report.lost[t]), ("duplicated", report.duplicated[t])):
            if items:
                print(f"{t} {kind}: " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(report.__dict__, default=list, indent=1), encoding="utf-8")
    return 0 if report.completed else 1


if __name__ == "__main__":
    sys.exit(main())
