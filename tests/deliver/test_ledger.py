"""The delivery ledger: its rules (pure) and, on the real broker, the owner's barrier."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config import MailferryConfig
from mailferry.config.kafka import KafkaConfig
from mailferry.consumers.handover import Handover
from mailferry.consumers.ledger import Ledger
from mailferry.consumers.ledger_state import (
    DELIVERED,
    Verdict,
    attempt_state,
    decode,
    encode,
    moved_state,
    verdict,
)

from .conftest import maildir_target, make_config


def test_a_delivery_goes_write_then_ask_then_skip() -> None:
    assert verdict(None, 0) is Verdict.WRITE
    assert verdict(attempt_state(0), 0) is Verdict.ASK  # an attempt without an outcome
    assert verdict(DELIVERED, 0) is Verdict.SKIP_DELIVERED
    assert verdict(DELIVERED, 3) is Verdict.SKIP_DELIVERED


def test_a_retry_record_makes_its_original_stale() -> None:
    moved = moved_state(1)  # the retry record of generation 1 holds the delivery
    assert verdict(moved, 0) is Verdict.SKIP_SUPERSEDED  # the original, read again
    assert verdict(moved, 1) is Verdict.WRITE  # the retry record; that failure was definite
    assert verdict(attempt_state(1), 0) is Verdict.SKIP_SUPERSEDED
    assert verdict(attempt_state(1), 1) is Verdict.ASK


@pytest.mark.parametrize("kind", ["attempt", "moved", "delivered"])
def test_entries_read_back_as_the_state_they_were_written_for(kind: str) -> None:
    for generation in range(12):
        state = decode(encode(kind, generation, "d", "now"))
        expected = {
            "attempt": attempt_state(generation),
            "moved": moved_state(generation),
            "delivered": DELIVERED,
        }
        assert state == expected[kind]
        for record in range(generation):  # an older record is never worked, whatever the entry says
            assert verdict(state, record) in (Verdict.SKIP_SUPERSEDED, Verdict.SKIP_DELIVERED)


def test_entries_of_older_releases_and_unreadable_ones() -> None:
    assert decode(b'{"delivery_id": "x", "at": "2026-01-01T00:00:00+00:00"}') == DELIVERED
    assert verdict(decode(b"\xff not json"), 0) is Verdict.ASK  # never skipped on a guess
    assert decode(None) is None


def test_handover_waits_for_running_attempts_and_refuses_new_ones() -> None:
    handover = Handover()
    part = ("deliver", 1)
    assert handover.enter(part)
    finished = threading.Event()

    def finish_later() -> None:
        time.sleep(0.3)
        finished.set()
        handover.leave(part)

    threading.Thread(target=finish_later).start()
    assert handover.close([part], timeout_s=10) == 0
    assert finished.is_set()
    assert not handover.enter(part)
    assert handover.enter(("deliver", 2))
    handover.reopen([part])
    assert handover.enter(part)


def test_handover_gives_up_after_its_bound() -> None:
    handover = Handover()
    assert handover.enter(("deliver", 0))
    assert handover.close([("deliver", 0)], timeout_s=0.2) == 1


@pytest.mark.integration
def test_sync_makes_the_previous_owners_entries_visible_at_once(
    tmp_path: Path, kafka_config: KafkaConfig, open_ledger: Callable[[MailferryConfig], Ledger]
) -> None:
    """What the next owner of a partition reads is authoritative, not a follower's lagging view."""
    config = make_config(tmp_path, kafka_config, maildir_target(tmp_path, name="m"))
    previous, next_owner = open_ledger(config), open_ledger(config)
    for round_ in range(20):
        key = f"acme/m/u@acme.example/{uuid.uuid4().hex}".encode()
        previous.record(key, f"d{round_}", partition=round_ % 3).get(timeout=30)
        next_owner.sync([round_ % 3])
        assert next_owner.contains(key), f"round {round_}: the entry is not in the next owner's view"
