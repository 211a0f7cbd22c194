"""Deterministic benchmark corpus: the same bytes for every client, run after run.

The size mix follows what a mail server really holds (most messages small, a few huge), because
a fetcher that is fast on 5 KB messages can still choke on a 40 MB one, and the other way round.
Messages are built by hand rather than with ``email.message`` so the generator is fast and so the
8-bit (raw UTF-8) headers go out exactly as some real senders write them.

Every message carries ``X-Bench-Id`` so a sink can tell which message arrived when, and the
messages of the global (multidrop) mailbox carry one ``X-Original-To`` envelope header naming
the local user it belongs to.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

DOMAIN = "bench.example"
GLOBAL_MAILBOX = "catchall"
ENVELOPE_HEADER = "X-Original-To"

# (share, low bytes, high bytes): 60% 2-20 KB, 30% 20-500 KB, 9% 0.5-10 MB, 1% 10-50 MB
SIZE_MIX: tuple[tuple[float, int, int], ...] = (
    (0.60, 2_000, 20_000),
    (0.30, 20_000, 500_000),
    (0.09, 500_000, 10_000_000),
    (0.01, 10_000_000, 50_000_000),
)

_WORDS = [
    "invoice",
    "meeting",
    "report",
    "quarterly",
    "budget",
    "review",
    "project",
    "schedule",
    "delivery",
    "order",
    "payment",
    "contract",
    "update",
    "draft",
    "agenda",
    "minutes",
    "customer",
    "support",
    "ticket",
    "release",
    "plan",
    "summary",
    "please",
    "attached",
    "regards",
    "thanks",
    "follow-up",
    "request",
    "approval",
    "deadline",
    "status",
    "shipment",
]
_UNICODE_NAMES = ("Jürgen Müller", "Zoë Ångström", "Łukasz Żółć", "Renée Dubois", "Søren Kjær")
_UNICODE_SUBJECTS = ("Größenänderung für Ihr Paket", "Réunion déplacée à jeudi", "Ærligt talt: møde")


@dataclass(frozen=True)
class BenchMessage:
    bench_id: str
    mailbox: str  # the Dovecot user whose mailbox holds it
    recipient: str  # the local user it belongs to (the mailbox owner, or the envelope name)
    data: bytes


@dataclass(frozen=True)
class CorpusSpec:
    mailboxes: int = 2  # personal mailboxes; one global mailbox comes on top
    messages: int = 200  # in total, spread evenly over personal + global mailboxes
    seed: int = 20261129
    huge_mb: int = 0  # when > 0, one extra message of this size in the first mailbox
    small: bool = False  # every message 4-30 KB (issue 14's small-mail shape) instead of SIZE_MIX

    def personal_names(self) -> list[str]:
        return [f"user{i:04d}" for i in range(self.mailboxes)]

    def mailbox_names(self) -> list[str]:
        return [*self.personal_names(), GLOBAL_MAILBOX]


def small_sizes(count: int, rng: random.Random) -> list[int]:
    """Small mail only, 4-30 KB: where every per-message cost shows (issue 14)."""
    return [rng.randint(4_000, 30_000) for _ in range(count)]


def bucket_sizes(count: int, rng: random.Random) -> list[int]:
    """Target sizes with the exact shares of SIZE_MIX (rounded, the rest small), shuffled, so a
    small corpus still has its large messages instead of leaving them to chance."""
    sizes: list[int] = []
    for share, low, high in SIZE_MIX[1:]:
        sizes += [rng.randint(low, high) for _ in range(round(count * share))]
    _, low, high = SIZE_MIX[0]
    sizes += [rng.randint(low, high) for _ in range(max(0, count - len(sizes)))]
    rng.shuffle(sizes)
    return sizes[:count]


def _text(rng: random.Random, size: int) -> str:
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(8, 12)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def _attachment(rng: random.Random, size: int) -> str:
    raw = rng.randbytes(size * 3 // 4)
    encoded = base64.b64encode(raw).decode("ascii")
    return "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + "\n"


def build_message(rng: random.Random, *, bench_id: str, to: str, envelope: str | None, size: int) -> bytes:
    """One RFC 5322 message (LF line ends, as Dovecot stores Maildir files) close to ``size``."""
    when = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 30 * 86400))
    eight_bit = rng.random() < 0.15
    sender = (
        f"{rng.choice(_UNICODE_NAMES)} <sender{rng.randint(1, 500)}@partner.example>"
        if eight_bit
        else f"Sender {rng.randint(1, 500)} <sender@partner.example>"
    )
    subject = rng.choice(_UNICODE_SUBJECTS) if eight_bit else " ".join(rng.choices(_WORDS, k=5)).capitalize()
    headers = []
    if envelope is not None:
        headers.append(f"{ENVELOPE_HEADER}: {envelope}")
    headers += [
        f"Received: from mx.partner.example (mx.partner.example [192.0.2.7]) by pop.{DOMAIN} "
        f"with ESMTPS; {format_datetime(when)}",
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{bench_id}@partner.example>",
        f"X-Bench-Id: {bench_id}",
        "MIME-Version: 1.0",
    ]
    with_attachment = size > 30_000 or rng.random() < 0.2
    if not with_attachment:
        charset = "utf-8" if eight_bit else "us-ascii"
        headers += [f"Content-Type: text/plain; charset={charset}", "Content-Transfer-Encoding: 8bit"]
        return ("\n".join(headers) + "\n\n" + _text(rng, size - 600)).encode("utf-8")
    boundary = f"=_bench_{bench_id}"
    body_text = _text(rng, min(4_000, size // 10))
    attachment = _attachment(rng, max(1_000, size - len(body_text) - 1_000))
    name = rng.choice(("report.pdf", "scan.tiff", "data.xlsx", "photo.jpg"))
    headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
    parts = [
        "\n".join(headers),
        "",
        "This is a multi-part message in MIME format.",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        body_text,
        f"--{boundary}",
        f'Content-Type: application/octet-stream; name="{name}"',
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="{name}"',
        "",
        attachment,
        f"--{boundary}--",
        "",
    ]
    return "\n".join(parts).encode("utf-8")


def generate(spec: CorpusSpec) -> Iterator[BenchMessage]:
    """Yield the corpus one message at a time (a 50 MB message need not wait for the others)."""
    rng = random.Random(spec.seed)
    names = spec.mailbox_names()
    personal = spec.personal_names()
    sizes = small_sizes(spec.messages, rng) if spec.small else bucket_sizes(spec.messages, rng)
    if spec.huge_mb > 0:
        sizes.insert(0, spec.huge_mb * 1_000_000)
    for index, size in enumerate(sizes):
        mailbox = names[index % len(names)] if spec.huge_mb <= 0 or index > 0 else names[0]
        bench_id = f"b{spec.seed}-{index:07d}"
        if mailbox == GLOBAL_MAILBOX:
            owner = rng.choice(personal) if personal else "postmaster"
            to = ", ".join(f"{n}@{DOMAIN}" for n in sorted({owner, rng.choice(personal or [owner])}))
            data = build_message(rng, bench_id=bench_id, to=to, envelope=f"{owner}@{DOMAIN}", size=size)
        else:
            owner = mailbox
            data = build_message(rng, bench_id=bench_id, to=f"{owner}@{DOMAIN}", envelope=None, size=size)
        yield BenchMessage(bench_id=bench_id, mailbox=mailbox, recipient=owner, data=data)
