"""The chaos suite's mailboxes and corpus: four tenants, one target each, two source
mailboxes per tenant (POP3 and IMAP), one recipient per message."""

from __future__ import annotations

import random
from collections import Counter

from corpus import build_message

TARGETS = ("ews", "graph", "smtp", "maildir")
BIG = 1_000_000  # a "large" message is 1-20 MB


def domain(target: str) -> str:
    return f"{target}.chaos.example"


def users(target: str) -> list[tuple[str, str]]:
    """Two source mailboxes per tenant, one POP3 and one IMAP: (Dovecot user, protocol)."""
    return [(f"{target}-pop", "pop3"), (f"{target}-imap", "imap")]


def address(user: str) -> str:
    return f"{user.split('-')[1]}@{domain(user.split('-')[0])}"


def build_corpus(
    messages: int, large: int, rng: random.Random
) -> tuple[list[tuple[str, bytes]], Counter[tuple[str, str]]]:
    """(source mailbox, message) in the order they are offered, and the (bench id, recipient)
    pairs expected once each."""
    boxes = [u for t in TARGETS for u, _ in users(t)]
    big = set(rng.sample(range(messages), min(large, messages)))
    expected: Counter[tuple[str, str]] = Counter()
    corpus: list[tuple[str, bytes]] = []
    for index in range(messages):
        box = boxes[index % len(boxes)]
        size = rng.randint(BIG, 20 * BIG) if index in big else rng.randint(2_000, 20_000)
        bench_id = f"chaos-{index:06d}"
        to = address(box)
        corpus.append((box, build_message(rng, bench_id=bench_id, to=to, envelope=None, size=size)))
        expected[(bench_id, to)] += 1
    return corpus, expected
