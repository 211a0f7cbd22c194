"""The GRAPH EMULATOR's JSON batching (not Microsoft Graph), driven by real httpx: strict about
the batch's shape, per step in its answers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from mailferry_testkit.graph_emulator import GraphEmulator, GraphFault

from .conftest import graph_token, message

BOB = "/users/bob@contoso.example/mailFolders/inbox"


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        emu.add_app("mailferry-app", "app secret", "contoso-tenant")
        emu.add_mailbox("bob@contoso.example")
        yield emu


def post_batch(emulator: GraphEmulator, document: Any, version: str = "v1.0") -> httpx.Response:
    return httpx.post(
        f"{emulator.base_url}/{version}/$batch",
        headers={"Authorization": f"Bearer {graph_token(emulator)}", "Content-Type": "application/json"},
        content=json.dumps(document),
    )


def create(step_id: str, subject: str = "hi") -> dict[str, Any]:
    return {
        "id": step_id,
        "method": "POST",
        "url": f"{BOB}/messages",
        "headers": {"Content-Type": "application/json"},
        "body": {"subject": subject},
    }


def by_id(reply: httpx.Response) -> dict[str, dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    return {r["id"]: r for r in reply.json()["responses"]}


def test_each_step_is_answered_by_its_id(emulator: GraphEmulator) -> None:
    steps = [create("1", "one"), create("2", "two"), {"id": "3", "method": "GET", "url": f"{BOB}/messages"}]
    reply = post_batch(emulator, {"requests": steps})
    answers = by_id(reply)
    assert [r["id"] for r in reply.json()["responses"]] != ["1", "2", "3"]  # any order: match by id
    assert {k: v["status"] for k, v in answers.items()} == {"1": 201, "2": 201, "3": 200}
    assert {i.message["subject"] for i in emulator.items("bob@contoso.example")} == {"one", "two"}
    assert emulator.batch_sizes == [3]
    assert emulator.requests["createMessage"] == 2


Mutation = Callable[[list[dict[str, Any]]], Any]


def _too_many(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [create(str(i)) for i in range(21)]}


def _same_id(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [create("a"), create("A")]}


def _unknown_dependency(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {**steps[1], "dependsOn": ["9"]}]}


def _later_dependency(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [{**steps[0], "dependsOn": ["2"]}, steps[1]]}


def _body_without_content_type(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {k: v for k, v in steps[1].items() if k != "headers"}]}


def _text_body_not_base64(steps: list[dict[str, Any]]) -> Any:
    return {
        "requests": [steps[0], {**steps[1], "headers": {"Content-Type": "text/plain"}, "body": "not base64!"}]
    }


def _json_body_as_string(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {**steps[1], "body": json.dumps(steps[1]["body"])}]}


def _absolute_url(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {**steps[1], "url": f"https://graph.microsoft.com/v1.0{BOB}/messages"}]}


def _no_id(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {k: v for k, v in steps[1].items() if k != "id"}]}


def _unknown_member(steps: list[dict[str, Any]]) -> Any:
    return {"requests": [steps[0], {**steps[1], "atomic": True}]}


def _empty(steps: list[dict[str, Any]]) -> Any:
    return {"requests": []}


@pytest.mark.parametrize(
    "mutation",
    [
        _too_many,
        _same_id,
        _unknown_dependency,
        _later_dependency,
        _body_without_content_type,
        _text_body_not_base64,
        _json_body_as_string,
        _absolute_url,
        _no_id,
        _unknown_member,
        _empty,
    ],
)
def test_a_malformed_batch_is_refused_whole(emulator: GraphEmulator, mutation: Mutation) -> None:
    """The well-formed batch runs; the malformed variant is a 400 and runs no step."""
    steps = [create("1"), create("2")]
    assert {r["status"] for r in by_id(post_batch(emulator, {"requests": steps})).values()} == {201}
    reply = post_batch(emulator, mutation(steps))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "BadRequest"
    assert len(emulator.items("bob@contoso.example")) == 2


def test_a_batch_over_four_megabytes_is_refused(emulator: GraphEmulator) -> None:
    big = {**create("1"), "body": {"subject": "x" * (4 * 1024 * 1024)}}
    assert post_batch(emulator, {"requests": [big]}).status_code == 413
    assert emulator.items("bob@contoso.example") == []


def test_import_mime_in_a_beta_batch_takes_its_base64_text_base64_encoded(emulator: GraphEmulator) -> None:
    """importMime's own body is base64 MIME as text/plain; in a batch a non-JSON body is the
    base64 of those bytes. Sending the MIME's base64 only once is refused for that step."""
    mime = message("<batch@sender.example>")
    twice = base64.b64encode(base64.b64encode(mime)).decode()
    once = base64.b64encode(mime).decode()
    step = {"method": "POST", "url": f"{BOB}/importMime", "headers": {"Content-Type": "text/plain"}}
    reply = post_batch(
        emulator,
        {"requests": [{**step, "id": "1", "body": twice}, {**step, "id": "2", "body": once}]},
        "beta",
    )
    answers = by_id(reply)
    assert answers["1"]["status"] == 201
    assert answers["2"]["status"] == 400
    assert answers["2"]["body"]["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    [stored] = emulator.items("bob@contoso.example")
    assert stored.mime == mime


def test_import_mime_is_not_in_a_v1_batch(emulator: GraphEmulator) -> None:
    step = {
        "id": "1",
        "method": "POST",
        "url": f"{BOB}/importMime",
        "headers": {"Content-Type": "text/plain"},
    }
    answers = by_id(
        post_batch(emulator, {"requests": [{**step, "body": base64.b64encode(b"eA==").decode()}]})
    )
    assert answers["1"]["status"] == 400
    assert emulator.items("bob@contoso.example") == []


def test_a_throttled_step_has_its_own_429_and_retry_after(emulator: GraphEmulator) -> None:
    emulator.inject(GraphFault.THROTTLED, operation="createMessage", retry_after=9)
    answers = by_id(post_batch(emulator, {"requests": [create(str(i)) for i in range(5)]}))
    throttled = [a for a in answers.values() if a["status"] == 429]
    assert len(throttled) == 1
    assert throttled[0]["headers"]["Retry-After"] == "9"
    assert throttled[0]["body"]["error"]["code"] == "ApplicationThrottled"
    assert sorted(a["status"] for a in answers.values()) == [201, 201, 201, 201, 429]
    assert len(emulator.items("bob@contoso.example")) == 4


def test_steps_count_against_the_mailbox_limit(emulator: GraphEmulator) -> None:
    """Graph runs four steps at once; with the mailbox's four slots taken by slow requests
    elsewhere, the batch's steps are throttled one by one."""
    emulator.inject(GraphFault.SLOW, count=4, operation="listMessages", delay=2.0)
    token = graph_token(emulator)
    url = f"{emulator.base_url}/v1.0{BOB}/messages"
    with httpx.Client() as client, ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(client.get, url, headers={"Authorization": f"Bearer {token}"}) for _ in range(4)]
        time.sleep(0.5)
        answers = by_id(post_batch(emulator, {"requests": [create("1"), create("2")]}))
        assert [f.result().status_code for f in slow] == [200] * 4
    assert {a["status"] for a in answers.values()} == {429}


def test_a_step_after_a_failed_dependency_is_424(emulator: GraphEmulator) -> None:
    emulator.inject(GraphFault.MIME_INVALID, operation="createMessage")
    steps = [create("1"), {**create("2"), "dependsOn": ["1"]}]
    answers = by_id(post_batch(emulator, {"requests": steps}))
    assert answers["1"]["status"] == 400
    assert answers["2"]["status"] == 424
    assert emulator.items("bob@contoso.example") == []


def test_the_whole_batch_can_be_throttled(emulator: GraphEmulator) -> None:
    emulator.inject(GraphFault.UNAVAILABLE, operation="batch", retry_after=3)
    reply = post_batch(emulator, {"requests": [create("1")]})
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "3"
    assert emulator.items("bob@contoso.example") == []
