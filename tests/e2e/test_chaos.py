"""The chaos suite, short: ~100 messages through real Dovecot, real Kafka, two workers of
each role and four targets (EWS EMULATOR, GRAPH EMULATOR, aiosmtpd, Maildir) while role
processes and a broker are ``kill -9``ed and a third worker joins and leaves (rebalances),
each fault while mail is in flight. Once on one embedded broker, once on the 3-broker
cluster (replication 3, min.insync.replicas 2), where the broker killed is the one leading
the most partitions. It runs ``benchmarks/chaos.py`` itself, the same command as the full
suite, and reads its JSON report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

CHAOS = Path(__file__).resolve().parents[2] / "benchmarks" / "chaos.py"
KILLS, BROKER_KILLS, REBALANCES = 3, 1, 1
FAULTS = KILLS + BROKER_KILLS + REBALANCES
SMTP_CONCURRENCY = 8  # the SMTP target's default: at most this many in flight per killed deliver worker


@pytest.fixture(scope="module", params=["single", "cluster"])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp(f"chaos-{request.param}")
    out = work / "report.json"
    argv = [sys.executable, str(CHAOS), "--messages", "100", "--large", "2", "--kills", str(KILLS)]
    argv += ["--broker-kills", str(BROKER_KILLS), "--broker-down", "5", "--rebalances", str(REBALANCES)]
    argv += ["--gap", "2", "--trickle", "2", "--settle", "8", "--timeout", "420"]
    argv += ["--work", str(work / "run"), "--json", str(out)]
    if request.param == "cluster":
        argv.append("--cluster")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert out.exists(), result.stdout[-4000:] + result.stderr[-4000:]
    data: dict[str, Any] = json.loads(out.read_text())
    data["output"] = result.stdout[-3000:]
    return data


@pytest.mark.timeout(660)
def test_every_fault_fired_while_mail_was_in_flight_and_nothing_is_lost(report: dict[str, Any]) -> None:
    assert len(report["faults"]) == FAULTS, report["output"]
    assert [f["kind"] for f in report["faults"] if f["in_flight"] <= 0] == [], report["output"]
    assert {t: v for t, v in report["lost"].items() if v} == {}, report["output"]
    if report["mode"] == "cluster":  # the node killed led partitions of mailferry's topics
        [broker] = [f for f in report["faults"] if f["kind"] == "broker"]
        led = re.search(r"led (\d+) of \d+ partitions", str(broker["victim"]))
        assert led is not None and int(led.group(1)) > 0, broker


@pytest.mark.timeout(660)
def test_no_duplicate_at_ews_graph_or_maildir(report: dict[str, Any]) -> None:
    dups = {t: report["duplicated"][t] for t in ("ews", "graph", "maildir") if report["duplicated"][t]}
    assert dups == {}, report["output"]


@pytest.mark.timeout(660)
def test_smtp_duplicates_stay_under_the_bound(report: dict[str, Any]) -> None:
    assert len(report["duplicated"]["smtp"]) <= (KILLS + BROKER_KILLS) * SMTP_CONCURRENCY, report["output"]
