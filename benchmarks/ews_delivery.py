"""Delivery rate of the EWS target (real exchangelib) into the EWS EMULATOR, by thread-pool size.

The emulator (not Microsoft Exchange) runs in its own process with a server budget:
``--max-concurrent`` requests at a time (Exchange's EWSMaxConcurrency defaults to 27) and
``--service-time`` seconds per request. Its own maximum rate is measured in the same run by
a bare HTTP client posting a prepared CreateItem from as many threads as the budget allows;
then the EWS target delivers to ``--mailboxes`` mailboxes from thread pools of each size.

    .venv/bin/python benchmarks/ews_delivery.py [--seconds 8] [--service-time 0.25]

Prints a table: deliveries/s per pool size, as a share of a bare HTTP client at the same
concurrency (the cost of exchangelib and the target) and of the emulator's maximum.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests

from mailferry.config.models import Tenant
from mailferry.config.targets import EwsTarget
from mailferry.config.types import SecretRef
from mailferry.consumers.target import DeliveryItem, DeliveryTarget
from mailferry.consumers.targets.ews import target as ews
from mailferry.errors import MailferryError

DOMAIN = "contoso.example"
USER, PASSWORD = "svc-mailferry", "emulator"


def sample(size: int) -> bytes:
    head = (
        "Received: from mx.isp.example by pop.isp.example; Tue, 03 Mar 2026 10:20:30 +0100\r\n"
        "From: Carol <carol@sender.example>\r\nTo: team@contoso.example\r\nSubject: figures\r\n"
        f"Date: Tue, 03 Mar 2026 10:19:00 +0100\r\nMessage-ID: <{uuid.uuid4().hex}@sender.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"The quarterly figures are attached below, line by line.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-m", "mailferry_testkit.ews_emulator",
        "--mailboxes", str(args.mailboxes), "--domain", DOMAIN, "--account", f"{USER}:{PASSWORD}",
        "--max-concurrent", str(args.max_concurrent), "--service-time", str(args.service_time),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def raw_envelope(mailbox: str, mime: bytes) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2016"/><t:ExchangeImpersonation><t:ConnectingSID>'
        f"<t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        '</s:Header><s:Body><m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="inbox"/></m:SavedItemFolderId><m:Items><t:Message>'
        f"<t:MimeContent>{base64.b64encode(mime).decode()}</t:MimeContent><t:IsRead>false</t:IsRead>"
        "</t:Message></m:Items></m:CreateItem></s:Body></s:Envelope>"
    ).encode()


def run_for(seconds: float, threads: int, work: Callable[[int], bool]) -> tuple[int, int, float]:
    """Call ``work`` from ``threads`` threads until the deadline; (ok, failed, elapsed)."""
    counts = [0, 0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(worker: int) -> None:
        for n in itertools.count():
            if time.monotonic() >= deadline:
                return
            ok = work(worker * 1_000_000 + n)
            with lock:
                counts[0 if ok else 1] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    return counts[0], counts[1], time.monotonic() - started


def raw_rate(url: str, threads: int, seconds: float, mailboxes: int, mime: bytes) -> float:
    bodies = [raw_envelope(f"user{n}@{DOMAIN}", mime) for n in range(1, mailboxes + 1)]
    local = threading.local()

    def post(n: int) -> bool:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.auth = (USER, PASSWORD)
        try:
            reply = session.post(
                url, data=bodies[n % mailboxes], headers={"Content-Type": "text/xml"}, timeout=30
            )
        except requests.RequestException:
            return False
        return reply.status_code == 200 and b'ResponseClass="Success"' in reply.content

    ok, _, elapsed = run_for(seconds, threads, post)
    return ok / elapsed


def make_target(url: str, concurrency: int) -> DeliveryTarget:
    config = EwsTarget(
        name="exchange", kind="ews", endpoint=url, version="Exchange2016", auth="basic",
        username=USER, password=SecretRef.plaintext(PASSWORD), concurrency=concurrency,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    tenant = Tenant(
        id="bench", accepted_domains=[DOMAIN], default_mailbox=f"postmaster@{DOMAIN}",
        default_target="exchange", targets=[config],
    )  # fmt: skip
    return ews.create(tenant, config)


def item(mailbox: str, mime: bytes) -> DeliveryItem:
    return DeliveryItem(
        tenant="bench", mailbox=mailbox, dedup_key=uuid.uuid4().hex, message_id=None, size=len(mime),
        sha256="0" * 64, open_message=lambda: io.BytesIO(mime),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mailboxes", type=int, default=50)
    parser.add_argument("--max-concurrent", type=int, default=27)
    parser.add_argument("--service-time", type=float, default=0.25)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per row")
    parser.add_argument("--size", type=int, default=10_000, help="message size in bytes")
    parser.add_argument("--pools", default="1,4,8,16,27", help="thread-pool sizes")
    args = parser.parse_args()
    pools = [int(p) for p in args.pools.split(",")]
    mime = sample(args.size)
    process, url = start_emulator(args)
    try:
        ceiling = args.max_concurrent / args.service_time if args.service_time else float("inf")
        emulator_max = raw_rate(url, args.max_concurrent, args.seconds, args.mailboxes, mime)
        saturated = raw_rate(url, 2 * args.max_concurrent, args.seconds, args.mailboxes, mime)
        target = make_target(url, max(pools))
        target.check_credentials()
        mailboxes = [f"user{n}@{DOMAIN}" for n in range(1, args.mailboxes + 1)]
        with ThreadPoolExecutor(min(args.max_concurrent, len(mailboxes))) as pool:  # warm: directory, folders
            list(pool.map(lambda m: target.deliver(item(m, mime)), mailboxes))

        def deliver(n: int) -> bool:
            try:
                target.deliver(item(mailboxes[n % len(mailboxes)], mime))
            except MailferryError:
                return False
            return True

        print(
            f"EWS EMULATOR (not Exchange): max_concurrent={args.max_concurrent}, service_time="
            f"{args.service_time}s, {args.mailboxes} mailboxes, {len(mime)} B messages"
        )
        print(
            f"theoretical ceiling {ceiling:.1f}/s; emulator maximum (bare HTTP, "
            f"{args.max_concurrent} threads) {emulator_max:.1f}/s; saturated (bare HTTP, "
            f"{2 * args.max_concurrent} threads, successes only) {saturated:.1f}/s"
        )
        print()
        print(
            "| pool | delivered | failed (busy) | deliveries/s | bare HTTP same pool /s "
            "| % of bare HTTP same pool | % of emulator max |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for size in pools:
            ok, failed, elapsed = run_for(args.seconds, size, deliver)
            bare = raw_rate(url, size, args.seconds, args.mailboxes, mime)
            rate = ok / elapsed
            share, overhead = 100 * rate / emulator_max, 100 * rate / bare
            print(
                f"| {size} | {ok} | {failed} | {rate:.1f} | {bare:.1f} | {overhead:.0f}% | {share:.0f}% |",
                flush=True,
            )
        target.close()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
