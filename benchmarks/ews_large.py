"""Peak memory of the EWS target delivering one large message to the EWS EMULATOR.

Issue 7's goal: peak RSS per worker < 300 MB with a 150 MB message. Each row runs the
delivering side in its own child process: the real EWS target (real exchangelib session,
basic auth, impersonation), with the message in a real ``LocalBlobStore`` and the
``DeliveryItem`` built by the worker's own ``delivery_item``. The child warms up (log-in,
folder, directory look-up, one small delivery), then delivers the large message and reports
its VmHWM (peak resident set, from /proc/self/status). The EWS EMULATOR (not Microsoft
Exchange) runs in this parent process on loopback; its memory is not measured. The stored
item is checked byte for byte (SHA-256) against the blob plus the trace header.

    .venv/bin/python benchmarks/ews_large.py [--streamed-mb 150,50] [--plain-mb 50]

Rows: the streamed path (``targets/ews/stream.py``, threshold ``--threshold-mb``, the target's default
1 MB) at each ``--streamed-mb`` size; plain exchangelib (threshold above the size) at each
``--plain-mb`` size; then ``--concurrent`` messages delivered at once from a thread pool, as
the worker does: just at the threshold (the worst case of the plain path) and of 20 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from mailferry.blobs import LocalBlobStore

DOMAIN = "contoso.example"
USER, PASSWORD = "svc-mailferry", "emulator"
MAILBOX = f"alice@{DOMAIN}"
TRACE = ("X-Mailferry-Trace", "contoso; ews-large-benchmark")
MB = 1024 * 1024


def message_chunks(size: int) -> Iterator[bytes]:
    """About ``size`` bytes of mail: headers, then 8-bit text lines, produced 1 MB at a time."""
    head = (
        "Received: from mx.isp.example by pop.isp.example; Tue, 03 Mar 2026 10:20:30 +0100\r\n"
        "From: Carol <carol@sender.example>\r\nTo: alice@contoso.example\r\nSubject: scans\r\n"
        f"Date: Tue, 03 Mar 2026 10:19:00 +0100\r\nMessage-ID: <{uuid.uuid4().hex}@sender.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode()
    yield head
    line = "Scanned page, Größe unbekannt, line {:010d}\r\n"
    block = "".join(line.format(i) for i in range(20000)).encode("latin-1")
    left = size - len(head)
    while left > 0:
        piece = block[:left]
        left -= len(piece)
        yield piece


def child(args: argparse.Namespace) -> None:
    """The delivering process: everything it allocates counts."""
    from mailferry.config.models import Tenant
    from mailferry.config.targets import EwsTarget
    from mailferry.config.types import SecretRef
    from mailferry.consumers.attempt import delivery_item
    from mailferry.consumers.targets.ews import target as ews

    target_config = EwsTarget(
        name="exchange",
        kind="ews",
        endpoint=args.endpoint,
        version="Exchange2016",
        auth="basic",
        username=USER,
        password=SecretRef.plaintext(PASSWORD),
        timeout=timedelta(seconds=600),
        stream_threshold=args.threshold,
    )
    tenant = Tenant(
        id="contoso",
        accepted_domains=[DOMAIN],
        default_mailbox=f"postmaster@{DOMAIN}",
        default_target="exchange",
        targets=[target_config],
    )
    blobs = LocalBlobStore(Path(args.blobs))
    target = ews.create(tenant, target_config)
    target.check_credentials()

    def delivery(ref: str, size: int) -> dict[str, object]:
        return {
            "tenant": "contoso",
            "recipient": MAILBOX,
            "dedup_key": uuid.uuid4().hex,
            "delivery_id": uuid.uuid4().hex,
            "message_id": None,
            "size": size,
            "sha256": ref.removeprefix("sha256:"),
            "inline": None,
            "blob_ref": ref,
            "add_headers": [{"name": TRACE[0], "value": TRACE[1]}],
            "flags": [],
        }

    warm = blobs.put(b"".join(message_chunks(20_000)))
    target.deliver(delivery_item(delivery(warm, 20_000), blobs))
    before = vm_hwm()
    started = time.monotonic()
    items = [delivery_item(delivery(args.ref, args.size), blobs) for _ in range(args.count)]
    with ThreadPoolExecutor(args.count) as pool:  # the worker's bounded pool for this target
        list(pool.map(target.deliver, items))
    seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "hwm_before": before, "hwm": vm_hwm()}))


def vm_hwm() -> int:
    """Peak resident set size of this process so far, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_row(
    path: str, size_mb: float, threshold: int, blobs: LocalBlobStore, count: int = 1
) -> dict[str, object]:
    from mailferry_testkit.ews_emulator.server import EwsEmulator

    ref, size = blobs.put_chunks(message_chunks(int(size_mb * MB)))
    expected = hashlib.sha256(f"{TRACE[0]}: {TRACE[1]}\r\n".encode())
    with blobs.open(ref) as handle:
        while chunk := handle.read(MB):
            expected.update(chunk)
    with EwsEmulator(max_message_size=4 * size) as emulator:
        emulator.add_account(USER, PASSWORD)
        emulator.add_mailbox(f"postmaster@{DOMAIN}")
        emulator.add_mailbox(MAILBOX)
        command = [
            sys.executable, __file__, "--child", "--endpoint", emulator.url, "--blobs", str(blobs.root),
            "--ref", ref, "--size", str(size), "--threshold", str(threshold), "--count", str(count),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"child failed ({path}, {size_mb} MB):\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        stored = emulator.items(MAILBOX)[-count:]
        ok = len(stored) == count and all(
            hashlib.sha256(s.mime).hexdigest() == expected.hexdigest()
            and s.message_flags == 1
            and not s.is_read
            and s.delivery_time is not None
            for s in stored
        )
    return {"path": path, "size": size, "count": count, "ok": ok, **result}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streamed-mb", default="150,50", help="message sizes for the streamed path")
    parser.add_argument("--plain-mb", default="50", help="message sizes for plain exchangelib ('' for none)")
    parser.add_argument("--threshold-mb", type=float, default=1.0, help="stream threshold of the target")
    parser.add_argument(
        "--concurrent", type=int, default=8, help="also N messages at once: at the threshold, and of 20 MB"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--blobs", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="mf-ews-large-") as tmp:
        blobs = LocalBlobStore(Path(tmp) / "blobs")
        threshold = int(args.threshold_mb * MB)
        for size_mb in [int(s) for s in args.streamed_mb.split(",") if s]:
            rows.append(run_row("streamed (ews/stream.py)", size_mb, threshold, blobs))
        for size_mb in [int(s) for s in args.plain_mb.split(",") if s]:
            rows.append(run_row("plain exchangelib", size_mb, size_mb * MB * 2, blobs))
        if args.concurrent > 1:
            n = args.concurrent
            rows.append(run_row("plain, at threshold", args.threshold_mb, threshold, blobs, n))
            rows.append(run_row("streamed", 20, threshold, blobs, n))
    print(f"EWS EMULATOR (this process, not measured above): peak RSS {vm_hwm() / MB:.0f} MB")
    print(
        f"{'path':<22} {'messages':>13} {'seconds':>8} {'RSS before':>11} {'peak RSS':>9} "
        f"{'added':>8} stored ok"
    )
    for row in rows:
        size, hwm = int(row["size"]), int(row["hwm"])  # type: ignore[call-overload]
        print(
            f"{row['path']:<22} {row['count']:>3} x {size / MB:>5.1f} MB {row['seconds']:>8.1f} "
            f"{int(row['hwm_before']) / MB:>8.0f} MB {hwm / MB:>6.0f} MB "
            f"{(hwm - int(row['hwm_before'])) / MB:>5.0f} MB {row['ok']}"  # type: ignore[call-overload]
        )


if __name__ == "__main__":
    main()
