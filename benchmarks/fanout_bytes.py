"""Deliver-topic bytes of one message by its number of recipients: before and after fan-out
was bounded (issue 11: a 400 KB message with 10,000 recipients wrote 6 GB).

Run: .venv/bin/python benchmarks/fanout_bytes.py [--sizes 20000,400000] [--recipients 1,2,10,100,500,10000]

Each row routes one inline message with the real router and encodes its delivery records
as the stream writes them (the dedup agent forwards those bytes unchanged). "before": no
cap, every delivery carries the body inline; "after": the tenant's default cap (500, the
rest as one copy to the default mailbox) and the body shared through the blob store. The
records are encoded one at a time, so 10,000 inline copies never sit in memory at once.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mailferry.blobstore import LocalBlobStore
from mailferry.config.models import MailferryConfig
from mailferry.rawrecord import RawSource, build_raw_record
from mailferry.schemas.codec import DELIVERY, codec
from mailferry.streams.bodies import shared_body
from mailferry.streams.router import Routed, route_raw

DOMAIN = "acme.example"
TRACE_KEY = b"benchmark trace key, 32 characters or more"


def config(state_dir: Path, cap: int) -> MailferryConfig:
    return MailferryConfig.model_validate(
        {
            "state_dir": str(state_dir),
            "tenants": [
                {
                    "id": "acme",
                    "accepted_domains": [DOMAIN],
                    "default_mailbox": f"postmaster@{DOMAIN}",
                    "default_target": "box",
                    "max_recipients_per_message": cap,
                    "targets": [{"kind": "maildir", "name": "box", "path": str(state_dir / "box")}],
                }
            ],
        }
    )


def deliver_bytes(cfg: MailferryConfig, size: int, recipients: int, *, share: bool) -> tuple[int, int]:
    """(deliveries, bytes) of one message of ``size`` bytes to ``recipients`` addresses."""
    blobs = LocalBlobStore(cfg.blob_dir)
    envelope = [f"user{i}@{DOMAIN}" for i in range(recipients)]
    head = b"Message-ID: <fanout@sender.example>\r\nSubject: fan-out\r\n\r\n"
    _key, raw = build_raw_record(
        RawSource("acme", "catchall", "pop3"),
        head + b"x" * (size - len(head)),
        blobs=blobs,
        inline_threshold=size,
        envelope_recipients=envelope,
    )
    routed = route_raw(
        raw, config=cfg, blobs=blobs, origin="raw/0/0", now=datetime.now(UTC), trace_key=TRACE_KEY
    )
    assert isinstance(routed, Routed)
    deliveries = [c.delivery for c in routed.candidates]
    if share:
        deliveries = shared_body(deliveries, blobs)
    encode = codec(DELIVERY).encode
    return len(deliveries), sum(len(encode(d)) for d in deliveries)


def human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    raise AssertionError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,400000")
    parser.add_argument("--recipients", default="1,2,10,100,500,10000")
    args = parser.parse_args()
    table = Table(title="deliver-topic bytes of one message")
    for column in (
        "size",
        "recipients",
        "before: records",
        "before: bytes",
        "after: records",
        "after: bytes",
        "after / before",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        uncapped = config(Path(tmp), cap=10**9)
        capped = config(Path(tmp), cap=500)
        for size in (int(s) for s in args.sizes.split(",")):
            for recipients in (int(r) for r in args.recipients.split(",")):
                before = deliver_bytes(uncapped, size, recipients, share=False)
                after = deliver_bytes(capped, size, recipients, share=True)
                table.add_row(
                    human(size),
                    str(recipients),
                    str(before[0]),
                    human(before[1]),
                    str(after[0]),
                    human(after[1]),
                    f"{after[1] / before[1]:.4f}",
                )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
