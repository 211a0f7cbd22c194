"""A 150 MB message through each blob store kind: peak RSS per role process, throughput.

Issue 13's goal: every role's peak RSS < 300 MB while a 150 MB message passes. Each row
is its own child process that builds its store from a config file with
``open_blob_store`` (what every role does) and reports its VmHWM (peak resident set, from
/proc/self/status):

- ``fetch: put`` - the message, produced 1 MB at a time as a fetcher reads it, into
  ``build_raw_record`` (above the inline threshold: into the blob store);
- ``stream: headers`` - the stream role's ``read_headers`` on that raw record;
- ``deliver: maildir`` - the delivery worker's ``delivery_item`` handed to the real Maildir
  target, which streams it into a file; the file is checked byte for byte (SHA-256);
- ``idle`` - a child that only imports the same modules and opens the store: the floor.

The servers run beside the children and are not counted: the embedded Kafka broker (real,
one node, 127.0.0.1) for kind ``kafka``, s3proxy (real, filesystem backend) for ``s3``.

    .venv/bin/python benchmarks/blob_large.py [--mb 150] [--kinds local,kafka,s3]
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
from pathlib import Path
from typing import Any

from mailferry.config.kafka import KafkaConfig

MB = 1024 * 1024


def message_chunks(size: int, seed: str) -> Iterator[bytes]:
    """About ``size`` bytes of mail, 1 MB at a time (never the whole message at once)."""
    head = (
        f"From: Carol <carol@sender.example>\r\nTo: alice@acme.example\r\nSubject: scans {seed}\r\n"
        f"Message-ID: <{seed}@sender.example>\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    yield head
    block = "".join(f"Scanned page {seed}, line {i:010d}\r\n" for i in range(25000)).encode()[:MB]
    left = size - len(head)
    while left > 0:
        piece = block[:left]
        left -= len(piece)
        yield piece


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One role's work in a process of its own; prints one JSON line."""
    from mailferry.blobs import open_blob_store
    from mailferry.config import load_config
    from mailferry.consumers.attempt import delivery_item
    from mailferry.consumers.targets.maildir import MaildirDelivery
    from mailferry.rawrecord import RawSource, build_raw_record
    from mailferry.streams.router import read_headers

    config = load_config(Path(args.config), check_secrets=False)
    store = open_blob_store(config)
    state = Path(args.state)
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if args.child == "put":
        _key, raw = build_raw_record(
            RawSource("acme", "catchall", "pop3"),
            message_chunks(args.mb * MB, args.seed),
            blobs=store,
            inline_threshold=config.blob_store.inline_threshold,
        )
        raw["fetched_at"] = raw["fetched_at"].isoformat()
        (state / "raw.json").write_text(json.dumps(raw))
        result["size"] = raw["size"]
    elif args.child in ("headers", "deliver"):
        raw = json.loads((state / "raw.json").read_text())
        if args.child == "headers":
            result["fields"] = len(read_headers(raw, store).fields)
        else:
            delivery = {
                "tenant": "acme", "recipient": "alice@acme.example", "dedup_key": f"k-{args.seed}",
                "delivery_id": args.seed, "message_id": None, "size": raw["size"], "sha256": raw["sha256"],
                "inline": None, "blob_ref": raw["blob_ref"], "flags": [], "add_headers": [],
            }  # fmt: skip
            target = MaildirDelivery("archive", state / "maildir")
            target.deliver(delivery_item(delivery, store))
            [written] = list((state / "maildir").glob("*/new/*"))
            digest = hashlib.sha256()
            with written.open("rb") as handle:
                while chunk := handle.read(MB):
                    digest.update(chunk)
            result["intact"] = digest.hexdigest() == raw["sha256"]
            written.unlink()
    result["seconds"] = time.perf_counter() - started
    store.close()
    result["peak_mb"] = _peak_mb()
    print(json.dumps(result))


def _run_child(role: str, config: Path, state: Path, mb: int, seed: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", role, "--config", str(config), "--state", str(state)]
    command += ["--mb", str(mb), "--seed", seed]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{role} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _config(work: Path, kind: str, kafka: KafkaConfig, prefix: str, s3: Any) -> Path:
    text = (
        f'allow_plaintext_secrets = true\nstate_dir = "{work / "state"}"\n'
        + kafka.model_copy(update={"topic_prefix": prefix}).connection_toml()
        + f'[blob_store]\nkind = "{kind}"\nspool_dir = "{work / "spool"}"\n'
    )
    if kind == "s3":
        text += (
            f'[blob_store.s3]\nbucket = "bench"\nendpoint_url = "{s3.endpoint}"\n'
            f'access_key_id = "{s3.access_key}"\nsecret_access_key = "{s3.secret_key}"\n'
        )
    path = work / f"{kind}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=150)
    parser.add_argument("--kinds", default="local,kafka,s3")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--seed", default=uuid.uuid4().hex, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import boto3
    from rich.console import Console
    from rich.table import Table

    from mailferry.config.kafka import EmbeddedKafka
    from mailferry.kafka.admin import ensure_topics
    from mailferry.kafka.clients import new_admin
    from mailferry.kafka.embedded import EmbeddedBroker
    from mailferry.kafka.topics import topic_specs
    from mailferry_testkit.s3proxy import S3Proxy

    kinds = args.kinds.split(",")
    table = Table(title=f"one {args.mb} MB message through each blob store kind (peak RSS per process)")
    for column in ("kind", "role: work", "seconds", "MB/s", "peak RSS MB", "check"):
        table.add_column(column, justify="left" if column in ("kind", "role: work", "check") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        broker = EmbeddedBroker(EmbeddedKafka(port=0, controller_port=0), base / "kafka")
        broker.start()
        kafka = broker.client_config()
        s3 = S3Proxy(base / "s3proxy").start() if "s3" in kinds else None
        try:
            prefix = f"bench{uuid.uuid4().hex[:6]}"
            admin = new_admin(kafka, list(kafka.bootstrap_servers))
            ensure_topics(admin, topic_specs(kafka.model_copy(update={"topic_prefix": prefix}), 1))
            admin.close()
            if s3 is not None:
                boto3.client(
                    "s3", endpoint_url=s3.endpoint, region_name="us-east-1",
                    aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
                ).create_bucket(Bucket="bench")  # fmt: skip
            for kind in kinds:
                work = base / kind
                (work / "state").mkdir(parents=True)
                config = _config(work, kind, kafka, prefix, s3)
                seed = uuid.uuid4().hex
                rows = [
                    ("idle", "imports + store", _run_child("idle", config, work / "state", args.mb, seed)),
                    ("put", "fetch: put", _run_child("put", config, work / "state", args.mb, seed)),
                    (
                        "headers",
                        "stream: headers",
                        _run_child("headers", config, work / "state", args.mb, seed),
                    ),
                    (
                        "deliver",
                        "deliver: maildir",
                        _run_child("deliver", config, work / "state", args.mb, seed),
                    ),
                ]
                for role, label, result in rows:
                    moved = role in ("put", "deliver")
                    rate = f"{args.mb / result['seconds']:.0f}" if moved else ""
                    check = "intact" if result.get("intact") else ("" if role != "deliver" else "MISMATCH")
                    table.add_row(
                        kind, label, f"{result['seconds']:.2f}", rate, f"{result['peak_mb']:.0f}", check
                    )
        finally:
            if s3 is not None:
                s3.stop()
            broker.stop()
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
