"""Realistic sample mail for the demo and the end-to-end test, deterministic.

Each case is one thing a connector gets wrong in practice: the same message twice, a Bcc
recipient only the envelope knows, no Message-ID, a large attachment, a mailing list, an
encoded subject. ``expected`` says where each message must end up, so a test can check
the pipeline against it instead of against numbers written down by hand.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime


@dataclass(frozen=True)
class SampleMessage:
    name: str
    data: bytes
    expected: tuple[str, ...]  # recipients that must receive it, once each
    flags: tuple[str, ...] = field(default=())


def _message(
    *,
    subject: str,
    sender: str,
    to: list[str],
    cc: list[str] | None = None,
    envelope: list[str] | None = None,
    message_id: str | None = "auto",
    when: datetime,
    body: str = "Hello,\n\nthis is a sample message.\n",
    attachment: bytes | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    for recipient in envelope or []:
        msg["Delivered-To"] = recipient
    msg["Received"] = (
        f"from mx.isp.example (mx.isp.example [192.0.2.25]) by pop.isp.example with ESMTPS; "
        f"{format_datetime(when)}"
    )
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    if message_id == "auto":
        digest = hashlib.sha1(f"{subject}|{when.isoformat()}|{to}".encode()).hexdigest()[:16]
        msg["Message-ID"] = f"<{digest}@sender.example>"
    elif message_id:
        msg["Message-ID"] = message_id
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="report.bin")
        msg.set_boundary("=_mailferry_sample_boundary")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def personal_mailbox(owner: str, *, when: datetime | None = None) -> list[SampleMessage]:
    """Mail for one person's ISP mailbox: every message belongs to ``owner``."""
    start = when or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    rng = random.Random(7)
    messages = []
    for i in range(4):
        messages.append(
            SampleMessage(
                f"personal-{i}",
                _message(
                    subject=f"Note{i} about the quarterly plan",
                    sender="partner@supplier.example",
                    to=["alice.private@isp.example"],
                    when=start + timedelta(minutes=i),
                    body="Regards\n" + "".join(rng.choice("abcdefgh \n") for _ in range(400)),
                ),
                (owner,),
            )
        )
    messages.append(
        SampleMessage(
            "personal-no-message-id",
            _message(
                subject="Nomsgid from an old mailer",
                sender="old@legacy.example",
                to=["alice.private@isp.example"],
                message_id=None,
                when=start + timedelta(minutes=9),
            ),
            (owner,),
        )
    )
    return messages


def catchall_mailbox(
    domain: str,
    default_mailbox: str,
    *,
    when: datetime | None = None,
    large_attachment_bytes: int = 2 * 1024 * 1024,
) -> list[SampleMessage]:
    """Mail for a domain's catch-all: recipients come from the envelope, not from To/Cc."""
    start = when or datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    bob, carol, dave = (f"{n}@{domain}" for n in ("bob", "carol", "dave"))
    shared_id = f"<meeting-2026@{domain.split('.')[0]}.partner.example>"
    rng = random.Random(11)
    payload = bytes(rng.getrandbits(8) for _ in range(large_attachment_bytes))
    return [
        SampleMessage(
            "catchall-bob",
            _message(
                subject="Invoice 4711", sender="billing@vendor.example", to=[bob], envelope=[bob], when=start
            ),
            (bob,),
        ),
        # one message for two people: a catch-all holds one copy per recipient, same Message-ID
        SampleMessage(
            "catchall-meeting-bob",
            _message(
                subject="Meeting on Monday",
                sender="pm@partner.example",
                to=[bob],
                cc=[carol],
                envelope=[bob],
                message_id=shared_id,
                when=start + timedelta(minutes=1),
            ),
            (bob,),
        ),
        SampleMessage(
            "catchall-meeting-carol",
            _message(
                subject="Meeting on Monday",
                sender="pm@partner.example",
                to=[bob],
                cc=[carol],
                envelope=[carol],
                message_id=shared_id,
                when=start + timedelta(minutes=1),
            ),
            (carol,),
        ),
        # the ISP delivered the same copy twice
        SampleMessage(
            "catchall-duplicate-1",
            _message(
                subject="Duplicate delivery",
                sender="news@shop.example",
                to=[carol],
                envelope=[carol],
                message_id="<dup-1@shop.example>",
                when=start + timedelta(minutes=2),
            ),
            (carol,),
        ),
        SampleMessage(
            "catchall-duplicate-2",
            _message(
                subject="Duplicate delivery",
                sender="news@shop.example",
                to=[carol],
                envelope=[carol],
                message_id="<dup-1@shop.example>",
                when=start + timedelta(minutes=2),
            ),
            (),
        ),
        # Bcc only: no envelope header survived, To names someone outside the domain
        SampleMessage(
            "catchall-bcc-only",
            _message(
                subject="Bcc only",
                sender="friend@elsewhere.example",
                to=["someone@elsewhere.example"],
                when=start + timedelta(minutes=3),
            ),
            (default_mailbox,),
            ("possible-lost-bcc",),
        ),
        SampleMessage(
            "catchall-large",
            _message(
                subject="Large report attached",
                sender="reports@vendor.example",
                to=[dave],
                envelope=[dave],
                when=start + timedelta(minutes=4),
                attachment=payload,
            ),
            (dave,),
        ),
        SampleMessage(
            "catchall-list",
            _message(
                subject="Grüße from the list",
                sender="list@lists.example",
                to=["list@lists.example"],
                envelope=[dave],
                when=start + timedelta(minutes=5),
                extra={"List-Id": "<team.lists.example>"},
            ),
            (dave,),
        ),
    ]
