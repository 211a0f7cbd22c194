"""Shared pieces of the delivery tests: a config on the session broker, records in, a worker."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from mailferry.audit import read_events
from mailferry.config import MailferryConfig, parse_config
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers import crashpoints
from mailferry.consumers.ledger import Ledger
from mailferry.consumers.worker import DeliveryWorker
from mailferry.kafka.clients import new_producer
from mailferry.kafka.topics import AUDIT, DELIVER, DLT, full_name
from mailferry.schemas.codec import DEAD_LETTER, DELIVERY, codec

from ..factories import records
from ..topics import create_topics, read_records
from .smtp_sink import LoopbackCA, SmtpSink, make_test_ca


def make_config(
    tmp_path: Path,
    kafka: KafkaConfig,
    targets: str,
    *,
    tiers: str = '["1s", "2s"]',
    horizon: str = "1h",
    tenants: tuple[str, ...] = ("acme",),
    extra: str = "",
) -> MailferryConfig:
    """A config whose every tenant has the given ``[[targets]]`` TOML (first is default).

    ``{tenant}`` in the targets is replaced by each tenant's id; the TOML is also written to
    ``tmp_path / "mailferry.toml"`` for the CLI.
    """
    default = targets.split('name = "', 1)[1].split('"', 1)[0]
    text = (
        f'state_dir = "{tmp_path / "state"}"\nallow_plaintext_secrets = true\n'
        + kafka.connection_toml()
        + f"[kafka.topics.defaults]\npartitions = 3\n"
        f'[retry]\ntiers = {tiers}\nhorizon = "{horizon}"\n' + extra
    )
    for tenant in tenants:
        text += (
            f'[[tenants]]\nid = "{tenant}"\naccepted_domains = ["{tenant}.example"]\n'
            f'default_mailbox = "postmaster@{tenant}.example"\ndefault_target = "{default}"\n'
            + targets.replace("[[targets]]", "[[tenants.targets]]").replace("{tenant}", tenant)
        )
    (tmp_path / "mailferry.toml").write_text(text, encoding="utf-8")
    config = parse_config(text)
    create_topics(config.kafka, len(config.retry.tiers))
    return config


def maildir_target(path: Path | str, *, name: str = "archive", extra: str = "") -> str:
    """The ``[[targets]]`` TOML of one Maildir target; ``{tenant}`` in ``path`` stands for each
    tenant (``make_config``); ``extra`` adds target fields (``max_message_size = 10``)."""
    return f'[[targets]]\nname = "{name}"\nkind = "maildir"\npath = "{path}"\n{extra}'


def maildir_config(
    tmp_path: Path, kafka: KafkaConfig, *, target_extra: str = "", **settings: Any
) -> tuple[Path, MailferryConfig]:
    """The worker tests' usual set-up: one Maildir target under ``tmp_path / "maildirs"``;
    ``settings`` go to ``make_config``. Returns the Maildir root and the config."""
    root = tmp_path / "maildirs"
    return root, make_config(tmp_path, kafka, maildir_target(root, extra=target_extra), **settings)


def delivery_record(
    recipient: str,
    body: bytes,
    *,
    tenant: str = "acme",
    target: str = "",
    dedup_key: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A delivery of ``body`` inline, as the stream routes it now (a fresh ``delivery_id``)."""
    return dict(
        records.delivery(
            delivery_id=uuid.uuid4().hex,
            tenant=tenant,
            recipient=recipient,
            target=target,
            dedup_key=dedup_key or f"{tenant}/{recipient}/{hashlib.sha256(body).hexdigest()}",
            message_id=message_id,
            inline=body,
            add_headers=[{"name": "X-Mailferry-Trace", "value": f"{tenant}; test"}],
            routed_at=datetime.now(UTC),
        )
    )


def sample_message(index: int, recipient: str) -> bytes:
    return (
        f"From: sender@example.org\r\nTo: {recipient}\r\nSubject: test {index}\r\n"
        f"Message-ID: <{index}.{uuid.uuid4().hex[:8]}@test>\r\n\r\nbody {index}\r\n"
    ).encode()


def publish(config: MailferryConfig, records: list[dict[str, Any]], topic: str = DELIVER) -> None:
    producer = new_producer(config.kafka, list(config.kafka.bootstrap_servers), acks="all")
    for record in records:
        key = f"{record['tenant']}/{record['recipient']}".encode()
        producer.send(full_name(config.kafka, topic), key=key, value=codec(DELIVERY).encode(record))
    producer.flush()
    producer.close()


def read_topic(config: MailferryConfig, logical: str, timeout_ms: int = 3000) -> list[Any]:
    return read_records(config.kafka, logical, timeout_ms)


def dead_letters(config: MailferryConfig, timeout_ms: int = 1000) -> list[dict[str, Any]]:
    return [codec(DEAD_LETTER).decode(r.value) for r in read_topic(config, DLT, timeout_ms)]


def audit_events(config: MailferryConfig, timeout_ms: int = 3000) -> list[dict[str, Any]]:
    return [event for r in read_topic(config, AUDIT, timeout_ms) for event in read_events(r)]


def events_named(config: MailferryConfig, name: str, recipient: str | None = None) -> list[dict[str, Any]]:
    """The audit events called ``name`` (of ``recipient`` only, if given); the short read
    timeout suits polling in ``RunningWorker.wait_for``."""
    return [
        e
        for e in audit_events(config, timeout_ms=1000)
        if e["event"] == name and (recipient is None or e["recipient"] == recipient)
    ]


def crash_at(tmp_path: Path, point: str) -> None:
    """Run the deliver role of ``tmp_path / "mailferry.toml"`` (``make_config``) in its own
    process until it SIGKILLs itself at the crash point ``point``."""
    process = subprocess.run(
        [sys.executable, "-m", "mailferry", "-c", str(tmp_path / "mailferry.toml"), "deliver"],
        env={**os.environ, crashpoints.ENV: point},
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stdout + process.stderr


class NeverCommits(DeliveryWorker):
    """Delivers and records outcomes, then 'dies' before any offset commit: the next worker
    reads all its records again."""

    def _commit(self, *, force: bool = False) -> None:
        return None


class RunningWorker:
    """A worker in a thread of the test process, stopped like SIGTERM would stop it."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:
            self.error = exc

    def wait_for(self, condition: Callable[[], bool], timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if condition():
                return
            time.sleep(0.2)
        import faulthandler

        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # why it is stuck
        raise AssertionError(f"condition not met within {timeout}s")

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        if self.error is not None:
            raise self.error


@pytest.fixture
def open_ledger() -> Iterator[Callable[[MailferryConfig], Ledger]]:
    """Opens a loaded ``Ledger`` of ``config`` with a producer of its own (no linger); both
    are closed when the test ends."""
    opened: list[tuple[Ledger, KafkaProducer]] = []

    def open_ledger(config: MailferryConfig) -> Ledger:
        servers = list(config.kafka.bootstrap_servers)
        producer = new_producer(config.kafka, servers, linger_ms=0)
        ledger = Ledger(config.kafka, servers, producer)
        opened.append((ledger, producer))
        ledger.load()
        return ledger

    yield open_ledger
    for ledger, producer in opened:
        ledger.close()
        producer.close()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., RunningWorker]]:
    """Starts a worker (``worker_class``, a ``DeliveryWorker`` by default; ``options`` go to its
    constructor) in a thread; whatever a test did not shut down is stopped when it ends."""
    running: list[RunningWorker] = []

    def start(
        config: MailferryConfig, *, worker_class: type[DeliveryWorker] = DeliveryWorker, **options: Any
    ) -> RunningWorker:
        handle = RunningWorker(worker_class(config, list(config.kafka.bootstrap_servers), **options))
        handle.thread.start()
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop.set()
        handle.thread.join(timeout=60)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    """A loopback CA per test module: an SMTP sink's certificate and the clients' trust."""
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def sink(ca: LoopbackCA) -> Iterator[SmtpSink]:
    """An aiosmtpd server (STARTTLS, login mailferry / s3cret) keeping what it accepts."""
    with SmtpSink(ca, users={"mailferry": "s3cret"}) as server:
        yield server


def maildir_files(root: Path, mailbox: str) -> list[Path]:
    from mailferry.consumers.targets.maildir import mailbox_dirname

    box = root / mailbox_dirname(mailbox)
    return sorted(p for sub in ("new", "cur") for p in (box / sub).glob("*") if p.is_file())
