"""The Graph target's JSON batching against the GRAPH EMULATOR (not Microsoft Graph), real httpx:
$batch requests of up to 20 per mailbox, each message with its own outcome."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest

from mailferry.consumers.target import DeliveryItem, Outcome
from mailferry.consumers.targets.graph import batch
from mailferry.errors import AmbiguousOutcomeError, PermanentError, TenantError, TransientError
from mailferry_testkit.graph_emulator import GraphEmulator, GraphFault

from .conftest import message
from .test_graph_target import make_target

ItemFor = Callable[..., DeliveryItem]
BOB, ALICE = "bob@contoso.example", "alice@contoso.example"
MODES = ["import-mime", "json"]
STEP = {"import-mime": "importMime", "json": "createMessage"}


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        emu.add_app("mailferry-app", "app secret", "contoso-tenant")
        emu.add_mailbox("postmaster@contoso.example")
        emu.add_mailbox(ALICE, aliases=("sales@contoso.example",))
        emu.add_mailbox(BOB)
        yield emu


class Committed:
    """The ``committing`` callback of the worker: records which items each request covered."""

    def __init__(self) -> None:
        self.calls: list[list[DeliveryItem]] = []

    def __call__(self, items: Sequence[DeliveryItem]) -> None:
        self.calls.append(list(items))


def deliver(target: object, items: list[DeliveryItem]) -> tuple[list[Outcome], Committed]:
    committed = Committed()
    outcomes = target.deliver_batch(items, committed)  # type: ignore[attr-defined]
    return outcomes, committed


@pytest.mark.parametrize("mode", MODES)
def test_n_messages_take_ceil_n_over_20_batch_requests(
    emulator: GraphEmulator, item_for: ItemFor, mode: str
) -> None:
    target = make_target(emulator, mode=mode)
    items = [item_for(BOB, message(f"<{i}@sender.example>")) for i in range(45)]
    outcomes, committed = deliver(target, items)
    assert outcomes == [None] * 45
    assert len(emulator.batch_sizes) == math.ceil(45 / 20)
    assert emulator.batch_sizes == [20, 20, 5]
    assert emulator.requests[STEP[mode]] == 45  # as steps, none on its own
    assert [len(c) for c in committed.calls] == [20, 20, 5]  # write-ahead before each request
    stored = emulator.items(BOB)
    assert sorted(s.internet_message_id or "" for s in stored) == sorted(
        f"<{i}@sender.example>" for i in range(45)
    )
    if mode == "import-mime":
        by_id = {s.internet_message_id: s.mime for s in stored}
        for i, item in enumerate(items):
            assert by_id[f"<{i}@sender.example>"] == (
                f"X-Mailferry-Delivery: {item.marker}\r\n".encode() + item.message_bytes()
            )
    for item in items[::10]:
        assert target.already_delivered(item) is True


def test_a_batch_does_not_mix_mailboxes(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    items = [item_for(BOB if i % 2 else "sales@contoso.example") for i in range(6)]
    outcomes, _ = deliver(target, items)
    assert outcomes == [None] * 6
    assert emulator.batch_sizes == [3, 3]
    assert len(emulator.items(BOB)) == len(emulator.items(ALICE)) == 3


@pytest.mark.parametrize("mode", MODES)
def test_a_throttled_message_alone_is_transient_with_its_retry_after(
    emulator: GraphEmulator, item_for: ItemFor, mode: str
) -> None:
    target = make_target(emulator, mode=mode)
    emulator.inject(GraphFault.THROTTLED, operation=STEP[mode], retry_after=7)
    items = [item_for(BOB) for _ in range(6)]
    outcomes, _ = deliver(target, items)
    [failed] = [o for o in outcomes if o is not None]
    assert isinstance(failed, TransientError)
    assert failed.reason_code == "throttled"
    assert failed.retry_after == 7
    assert len(emulator.items(BOB)) == 5
    again, _ = deliver(target, [items[outcomes.index(failed)]])
    assert again == [None]
    assert len(emulator.items(BOB)) == 6


def test_a_refused_message_alone_is_permanent(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    emulator.inject(GraphFault.MIME_INVALID, operation="importMime")
    outcomes, _ = deliver(target, [item_for(BOB) for _ in range(4)])
    [failed] = [o for o in outcomes if o is not None]
    assert type(failed) is PermanentError
    assert failed.reason_code == "mime-conversion-failed"
    assert len(emulator.items(BOB)) == 3


def test_an_unknown_mailbox_fails_its_messages_only(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    outcomes, _ = deliver(target, [item_for(BOB), item_for("ghost@contoso.example"), item_for(BOB)])
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PermanentError) and outcomes[1].reason_code == "no-such-mailbox"
    assert emulator.batch_sizes == [2]


def test_a_throttled_batch_is_transient_for_each_message(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    emulator.inject(GraphFault.THROTTLED, operation="batch", retry_after=4)
    outcomes, _ = deliver(target, [item_for(BOB) for _ in range(3)])
    assert all(isinstance(o, TransientError) and o.retry_after == 4 for o in outcomes)
    assert emulator.items(BOB) == []


def test_no_answer_to_a_batch_is_ambiguous_and_each_message_is_found(
    emulator: GraphEmulator, item_for: ItemFor
) -> None:
    """The idempotence check stays per message: each is looked up by its own marker."""
    target = make_target(emulator, timeout=timedelta(seconds=2))
    emulator.inject(GraphFault.TIMEOUT_AFTER_STORE, operation="importMime", delay=4.0)
    items = [item_for(BOB) for _ in range(3)]
    outcomes, _ = deliver(target, items)
    assert all(isinstance(o, AmbiguousOutcomeError) for o in outcomes)
    assert [target.already_delivered(i) for i in items] == [True, True, True]
    assert target.already_delivered(item_for(BOB)) is False


def test_a_message_too_large_for_a_batch_goes_on_its_own(emulator: GraphEmulator, item_for: ItemFor) -> None:
    """importMime's base64 text is base64-encoded again in a batch: 2.5 MB of MIME is over
    4 MB there, so it keeps the request of its own; the small ones share a $batch."""
    target = make_target(emulator)
    big = item_for(BOB, message(body=b"y" * (2_500_000)))
    items = [item_for(BOB), big, item_for(BOB)]
    outcomes, committed = deliver(target, items)
    assert outcomes == [None, None, None]
    assert emulator.batch_sizes == [2]
    assert emulator.requests["importMime"] == 3
    assert [len(c) for c in committed.calls] == [2]  # the big one recorded through item.committing()


def test_a_batch_of_one_is_a_plain_request(emulator: GraphEmulator, item_for: ItemFor) -> None:
    target = make_target(emulator)
    outcomes, _ = deliver(target, [item_for(BOB)])
    assert outcomes == [None]
    assert emulator.batch_sizes == []
    assert emulator.requests["importMime"] == 1


def test_a_refused_permission_stops_the_batch(emulator: GraphEmulator, item_for: ItemFor) -> None:
    """A tenant-wide refusal for one mailbox's $batch is given to the messages not tried
    yet too (they are parked with the tenant), not sent to a server that refuses them."""
    target = make_target(emulator)
    emulator.inject(GraphFault.FORBIDDEN, operation="batch")
    items = [item_for(BOB), item_for(BOB), item_for(ALICE), item_for(ALICE)]
    outcomes, _ = deliver(target, items)
    assert all(isinstance(o, TenantError) and o.reason_code == "permission-denied" for o in outcomes)
    assert emulator.requests["batch"] == 1


def test_a_step_missing_from_the_answer_is_ambiguous() -> None:
    """Graph answers steps in any order, matched by id; a step it does not answer may have run."""
    steps = [
        batch.step(i, "/users/b/mailFolders/inbox/messages", "application/json", b"{}") for i in range(3)
    ]
    answer = {
        "responses": [
            {"id": "2", "status": 429, "headers": {"retry-after": "5"}, "body": {"error": {"code": "x"}}},
            {"id": "0", "status": 201, "body": {}},
        ]
    }
    verdicts = batch.verdicts(answer, steps, tenant="contoso")
    assert verdicts[0] is None
    assert isinstance(verdicts[1], AmbiguousOutcomeError)
    assert isinstance(verdicts[2], TransientError) and verdicts[2].retry_after == 5
