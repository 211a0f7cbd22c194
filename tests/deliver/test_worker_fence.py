"""The delivery worker refuses a record whose recipient is outside its tenant (issue 11 item 4).

A topic writer (or a stream that routed wrongly) can put any recipient on a delivery
record; the worker is the last point before a mailbox is written, so it checks again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailferry.config.kafka import KafkaConfig

from .conftest import (
    RunningWorker,
    audit_events,
    dead_letters,
    delivery_record,
    maildir_files,
    maildir_target,
    make_config,
    publish,
    sample_message,
)

pytestmark = pytest.mark.integration


def test_a_recipient_outside_the_tenant_is_dead_lettered_not_delivered(
    tmp_path: Path, kafka_config: KafkaConfig, start_worker: Callable[..., RunningWorker]
) -> None:
    root = tmp_path / "maildirs"
    config = make_config(
        tmp_path,
        kafka_config,
        maildir_target(f"{root}/{{tenant}}"),
        tenants=("acme", "globex"),
    )
    crossing = [
        delivery_record("ceo@globex.example", sample_message(1, "ceo@globex.example"), tenant="acme"),
        delivery_record("ceo@GLOBEX.example.", sample_message(2, "ceo@globex.example"), tenant="acme"),
        delivery_record("not an address", sample_message(3, "x"), tenant="acme"),
    ]
    fine = delivery_record("bob@acme.example", sample_message(4, "bob@acme.example"), tenant="acme")
    publish(config, [*crossing, fine])

    worker = start_worker(config)
    worker.wait_for(
        lambda: len(dead_letters(config)) >= 3 and bool(maildir_files(root / "acme", "bob@acme.example"))
    )
    worker.shutdown()

    letters = dead_letters(config)
    assert sorted(letter["delivery"]["recipient"] for letter in letters) == sorted(
        r["recipient"] for r in crossing
    )
    assert {(letter["error_class"], letter["reason_code"]) for letter in letters} == {
        ("permanent", "cross-tenant-refused")
    }
    assert "outside tenant acme" in letters[0]["error_message"]
    for tenant in ("acme", "globex"):
        assert maildir_files(root / tenant, "ceo@globex.example") == []
    refused = [e for e in audit_events(config) if e["event"] == "dead-lettered"]
    assert {e["details"]["reason"] for e in refused} == {"cross-tenant-refused"}
