"""Chaos suite: the whole pipeline under ``kill -9``, counting every (message, recipient).

One command starts a real Dovecot, a real Kafka (one embedded broker, or with ``--cluster``
the 3-broker KRaft cluster: replication 3, min.insync.replicas 2), two worker processes of
each role (``python -m mailferry -c CONFIG fetch|stream|deliver``, supervised and restarted as
``mailferry run`` does) and four targets at once, one tenant each: the EWS EMULATOR, the
GRAPH EMULATOR (neither is Microsoft's), an SMTP sink (aiosmtpd) and a Maildir. While mail
flows it ``kill -9``s role processes (the supervisor restarts them) and a broker (on the
cluster: the node leading the most partitions; started again after ``--broker-down``
seconds), and forces rebalances (a third worker of a role joins, then leaves). Faults fire at
shares of the corpus between 5 % and 85 % delivered; the source is fed a bounded backlog
ahead of the deliveries so every fault meets mail in flight, and each fault's line shows how
much. At the end it prints lost / duplicated per target, and each duplicate charged to the
last fault before it was first seen.

    .venv/bin/python benchmarks/chaos.py --seed 5              # 2,000 messages, 15 faults
    .venv/bin/python benchmarks/chaos.py --cluster --seed 7    # the same on the 3-broker cluster
    .venv/bin/python benchmarks/chaos.py --messages 100 --kills 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "compare"))

from chaoslib.brokers import Brokers, Cluster, SingleBroker
from chaoslib.config import config_text
from chaoslib.mail import TARGETS, build_corpus, domain, users
from chaoslib.schedule import ROLES, Fired, blame, offer_limit, plan
from chaoslib.targets import Targets
from kafka.errors import KafkaError

from mailferry.config import MailferryConfig, load_config
from mailferry.config.kafka import KafkaConfig
from mailferry.kafka.admin import ensure_topics
from mailferry.kafka.clients import new_admin
from mailferry.kafka.topics import topic_specs
from mailferry.supervisor import Role, Supervisor
from mailferry_testkit.dovecot import DovecotServer
from mailferry_testkit.kafka_cluster import REPLICATION

WORKERS = 2
REBALANCE_ROLES = ("deliver", "stream")  # a third member joins these groups in turn


@dataclass
class Report:
    mode: str
    expected: int
    seconds: float  # until every fault fired and every pair arrived
    all_arrived: float | None  # when every expected pair was first present
    faults: list[dict[str, object]]
    lost: dict[str, list[str]]
    duplicated: dict[str, list[str]]
    dup_by_fault: dict[str, Counter[str]]
    completed: bool  # every fault fired and nothing lost

    @property
    def mid_traffic(self) -> int:
        return sum(1 for f in self.faults if int(str(f["in_flight"])) > 0)

    def table(self) -> str:
        rows = [f"{'target':<10}{'expected':>10}{'lost':>8}{'duplicated':>12}"]
        per_target = self.expected // len(TARGETS)
        for t in TARGETS:
            rows.append(f"{t:<10}{per_target:>10}{len(self.lost[t]):>8}{len(self.duplicated[t]):>12}")
        rows += ["", "duplicates by the last fault before they appeared:"]
        rows.append(f"{'fault':<10}" + "".join(f"{t:>9}" for t in TARGETS))
        for kind in (*ROLES, "broker", "rebalance", "none"):
            rows.append(f"{kind:<10}" + "".join(f"{self.dup_by_fault[t][kind]:>9}" for t in TARGETS))
        return "\n".join(rows)


@dataclass
class Joiner:
    """A third member of a role's group: joining and leaving are two forced rebalances."""

    name: str
    process: subprocess.Popen[bytes]
    leave_at: float
    left_at: float | None = None


@dataclass
class Chaos:
    """What the run loop needs to fire faults."""

    supervisor: Supervisor
    brokers: Brokers
    topics: list[str]
    argv: list[str]
    logs: Path
    rng: random.Random
    hold: float
    joiners: list[Joiner] = field(default_factory=list)
    rebalances: int = 0

    def fire(self, kind: str, now: float) -> str:
        if kind == "broker":
            return self.brokers.kill(self.topics)
        if kind == "rebalance":
            return self._join(now)
        alive = [r for r in self.supervisor.roles if r.name.startswith(kind) and r.process is not None]
        if not alive:
            return f"{kind} (none running)"
        role = self.rng.choice(alive)
        assert role.process is not None
        os.killpg(role.process.pid, signal.SIGKILL)
        return f"{role.name} (pid {role.process.pid})"

    def _join(self, now: float) -> str:
        role = REBALANCE_ROLES[self.rebalances % len(REBALANCE_ROLES)]
        self.rebalances += 1
        name = f"{role}-joiner{self.rebalances}"
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [*self.argv, role], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.joiners.append(Joiner(name, process, now + self.hold))
        return f"{name} joins (pid {process.pid})"

    def tend(self, now: float) -> None:
        """Joiners leave (SIGTERM: a clean leave) after ``hold`` seconds; SIGKILL after 60 s more."""
        for joiner in list(self.joiners):
            if joiner.process.poll() is not None:
                print(f"  {now:6.1f}s {joiner.name} left (exit {joiner.process.returncode})", flush=True)
                self.joiners.remove(joiner)
            elif joiner.left_at is None and now >= joiner.leave_at:
                os.killpg(joiner.process.pid, signal.SIGTERM)
                joiner.left_at = now
            elif joiner.left_at is not None and now - joiner.left_at > 60:
                os.killpg(joiner.process.pid, signal.SIGKILL)

    def stop(self) -> None:
        for joiner in self.joiners:
            if joiner.process.poll() is None:
                os.killpg(joiner.process.pid, signal.SIGKILL)
                joiner.process.wait()


def run(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="mailferry-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    brokers: Brokers = Cluster(work / "kafka-cluster") if args.cluster else SingleBroker(work / "kafka")
    print(f"  Kafka: {brokers.describe()}", flush=True)
    brokers.start()
    server = DovecotServer(work / "dovecot").start()
    targets = Targets(work)
    supervisor: Supervisor | None = None
    chaos: Chaos | None = None
    try:
        boxes = [u for t in TARGETS for u, _ in users(t)]
        for user in boxes:
            server.add_user(user, f"pw-{user}")
        corpus, expected = build_corpus(args.messages, args.large, rng)
        kafka = brokers.client_config(KafkaConfig(topic_prefix="chaos"))
        replication = REPLICATION if args.cluster else 1
        config_path = work / "chaos.toml"
        config_path.write_text(
            config_text(work, kafka, replication, server, targets.start()), encoding="utf-8"
        )
        config = load_config(config_path)
        topics = [spec.name for spec in topic_specs(config.kafka, len(config.retry.tiers))]
        _create_topics(config)
        mailferry = [sys.executable, "-m", "mailferry", "-c", str(config_path)]
        subprocess.run([*mailferry, "mailboxes", "sync"], check=False, capture_output=True)
        roles = [Role(f"{r}-{i}", [*mailferry, r]) for r in ROLES for i in range(1, WORKERS + 1)]
        supervisor = Supervisor(roles, log_dir=work / "logs", report=lambda m: print(f"  {m}", flush=True))
        chaos = Chaos(supervisor, brokers, topics, mailferry, work / "logs", rng, args.hold)
        faults = plan(args.kills, args.broker_kills, args.rebalances, rng)
        fired: list[Fired] = []
        first_dup: dict[str, dict[tuple[str, str], float]] = {t: {} for t in TARGETS}
        total = sum(expected.values())
        window = max(args.trickle, int(args.window * total))
        offered = 0
        began = time.monotonic()
        supervisor.start()
        broker_back_at: float | None = None
        done_since: float | None = None
        all_arrived: float | None = None
        shown = 0.0
        while time.monotonic() - began < args.timeout:
            supervisor.check()
            chaos.tend(time.monotonic() - began)
            now = time.monotonic() - began
            if broker_back_at is not None and now >= broker_back_at:
                brokers.restart()
                print(f"  {now:6.1f}s broker restarting", flush=True)
                broker_back_at = None
            counts = targets.counts()
            for t in TARGETS:
                for key, n in counts[t].items():
                    if n > 1:
                        first_dup[t].setdefault(key, now)
            delivered = _delivered(counts, expected)
            busy = broker_back_at is not None or brokers.down
            spaced = not fired or now - fired[-1].at >= args.gap
            next_share = faults[0].at_share if faults else None
            limit = offer_limit(total, delivered, next_share, window, args.trickle, busy or not spaced)
            if limit > offered:
                _offer(server, corpus[offered:limit])
                offered = limit
            due = faults and delivered >= faults[0].at_share * total
            flowing = offered > delivered or offered >= total  # the report shows a fault with none
            if due and spaced and not busy and flowing:
                fault = faults.pop(0)
                at_source = sum(server.message_count(u) for u in boxes)
                victim = chaos.fire(fault.kind, now)
                in_flight = offered - delivered
                past = max(0, in_flight - at_source)
                fired.append(Fired(now, fault.kind, victim, delivered, offered, at_source, in_flight, past))
                print(f"  {fired[-1].line()}", flush=True)
                if fault.kind == "broker":
                    broker_back_at = now + args.broker_down
            if now - shown >= 30:
                print(f"  {now:6.1f}s delivered {delivered}/{total}, offered {offered}", flush=True)
                shown = now
            if delivered >= total and all_arrived is None:
                all_arrived = now
            if delivered >= total and not faults and not busy and not chaos.joiners:
                done_since = done_since or now
                if now - done_since >= args.settle:
                    break
            else:
                done_since = None
            time.sleep(0.5)
        seconds = done_since or (time.monotonic() - began)
        final = targets.counts()
        lost = {
            t: sorted(f"{b} {r}" for (b, r) in expected if domain(t) in r and final[t][(b, r)] == 0)
            for t in TARGETS
        }
        duplicated = {t: sorted(f"{b} {r} x{n}" for (b, r), n in final[t].items() if n > 1) for t in TARGETS}
        dup_by_fault = {t: Counter(blame(when, fired) for when in first_dup[t].values()) for t in TARGETS}
        complete = not any(lost.values()) and not faults
        mode = "cluster" if args.cluster else "single"
        faults_out: list[dict[str, object]] = [{**f.__dict__, "line": f.line()} for f in fired]
        return Report(mode, total, seconds, all_arrived, faults_out, lost, duplicated, dup_by_fault, complete)
    finally:
        if chaos is not None:
            chaos.stop()
        if supervisor is not None:
            supervisor.stop()
        if getattr(targets, "ews", None) is not None:
            targets.stop()
        server.remove()
        brokers.stop()
        print(f"  work folder (config, role logs): {work}", flush=True)


def _delivered(counts: dict[str, Counter[tuple[str, str]]], expected: Counter[tuple[str, str]]) -> int:
    return sum(min(n, expected[k]) for t in TARGETS for k, n in counts[t].items() if k in expected)


def _offer(server: DovecotServer, batch: list[tuple[str, bytes]]) -> None:
    by_box: dict[str, list[bytes]] = {}
    for box, data in batch:
        by_box.setdefault(box, []).append(data)
    for box, messages in by_box.items():
        server.seed(box, messages)


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--large", type=int, default=12, help="how many of them are 1-20 MB")
    parser.add_argument(
        "--kills", type=int, default=12, help="kill -9 of role processes (fetch/stream/deliver in turn)"
    )
    parser.add_argument("--broker-kills", type=int, default=1, help="on --cluster: of a partition leader")
    parser.add_argument("--broker-down", type=float, default=10.0, help="seconds before the broker restarts")
    parser.add_argument("--rebalances", type=int, default=2, help="a third worker joins, leaves")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds a joining worker stays")
    parser.add_argument("--cluster", action="store_true", help="the 3-broker KRaft cluster, not one broker")
    parser.add_argument("--gap", type=float, default=2.0, help="at least this many seconds between faults")
    parser.add_argument("--window", type=float, default=0.08, help="backlog offered ahead (share of corpus)")
    parser.add_argument("--trickle", type=int, default=16, help="least backlog while a fault waits")
    parser.add_argument("--settle", type=float, default=15.0, help="quiet seconds after the last delivery")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run's cleanup stops roles, broker, Dovecot
    started = time.monotonic()
    report = run(args)
    size = f"{args.messages} messages ({args.large} of 1-20 MB), {report.mode} broker mode"
    arrived = "never" if report.all_arrived is None else f"{report.all_arrived:.0f} s"
    command = time.monotonic() - started
    print(f"\n{size}; all arrived after {arrived}, run {report.seconds:.0f} s, command {command:.0f} s")
    print(f"faults fired: {len(report.faults)}, mid-traffic (mail in flight): {report.mid_traffic}")
    for fault in report.faults:
        print(f"  {fault['line']}")
    print(report.table())
    for t in TARGETS:
        for kind, items in (("lost", report.lost[t]), ("duplicated", report.duplicated[t])):
            if items:
                print(f"{t} {kind}: " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
    if args.json:
        data = {**report.__dict__, "mid_traffic": report.mid_traffic}
        Path(args.json).write_text(json.dumps(data, default=list, indent=1), encoding="utf-8")
    return 0 if report.completed else 1


if __name__ == "__main__":
    sys.exit(main())
