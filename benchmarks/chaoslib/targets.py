"""The four targets of the chaos suite and a count of what each holds, keyed
(bench id, recipient address): the EWS EMULATOR, the GRAPH EMULATOR (neither is
Microsoft's), an SMTP sink (aiosmtpd) and a Maildir."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sink import SmtpSink

from mailferry.consumers.targets.maildir import mailbox_dirname
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

from .mail import BIG, TARGETS, address, domain, users

EWS_ACCOUNT, EWS_PASSWORD = "svc-chaos", "chaos-ews-password"
GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT = "chaos-app", "chaos-graph-secret", "chaos-tenant"
_BENCH_ID = re.compile(rb"^X-Bench-Id:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


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
