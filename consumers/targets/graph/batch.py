"""Graph JSON batching for the Graph target: deliveries as ``$batch`` steps, and each step's
verdict (pure, no I/O).

A step's body is what the request outside a batch would carry: the message JSON as a JSON
object (json mode), or, for ``importMime``, whose body is the base64 text of the MIME with
``Content-Type: text/plain``, that text base64-encoded once more — Graph takes a non-JSON
body in a batch only as base64 of its bytes. A batch holds at most 20 steps and stays under
Graph's 4 MB request limit; a step too large for that goes as a request of its own.
Graph answers per step, in any order, matched here by ``id``; a step missing from the
answer may have run, so it is ambiguous (the target is asked before writing it again).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailferry.errors import AmbiguousOutcomeError, MailferryError
from mailferry.exchange.graph.errors import classify_response, parse_retry_after

MAX_STEPS = 20
MAX_BYTES = 4 * 1024 * 1024 - 16 * 1024  # the whole $batch request, under Graph's 4 MB limit


@dataclass(frozen=True)
class Step:
    index: int  # the delivery's place in the target's batch
    encoded: bytes  # the step as JSON

    @property
    def id(self) -> str:
        return str(self.index)


def step(index: int, url: str, content_type: str, content: bytes) -> Step:
    """The step POSTing ``content`` (the body outside a batch) to ``url`` (relative to the version)."""
    head = json.dumps(
        {"id": str(index), "method": "POST", "url": url, "headers": {"Content-Type": content_type}}
    ).encode()
    body = (
        content
        if content_type == "application/json"
        else json.dumps(base64.b64encode(content).decode()).encode()
    )
    return Step(index, head[:-1] + b', "body": ' + body + b"}")


def fits_alone(one: Step) -> bool:
    return len(one.encoded) + 16 <= MAX_BYTES


def chunks(steps: Sequence[Step]) -> list[list[Step]]:
    """``steps`` in order, in $batch requests of at most ``MAX_STEPS`` and ``MAX_BYTES``."""
    out: list[list[Step]] = []
    size = 0
    for one in steps:
        if not out or len(out[-1]) >= MAX_STEPS or size + len(one.encoded) + 1 > MAX_BYTES - 16:
            out.append([])
            size = 0
        out[-1].append(one)
        size += len(one.encoded) + 1
    return out


def request_body(steps: Sequence[Step]) -> bytes:
    return b'{"requests": [' + b",".join(s.encoded for s in steps) + b"]}"


def verdicts(
    answer: dict[str, Any], steps: Sequence[Step], *, tenant: str
) -> dict[int, MailferryError | None]:
    """Each step's outcome: None when created, else the error Graph's table maps its status to."""
    responses = answer.get("responses")
    by_id = {
        str(r.get("id")).lower(): r
        for r in (responses if isinstance(responses, list) else [])
        if isinstance(r, dict)
    }
    out: dict[int, MailferryError | None] = {}
    for one in steps:
        response = by_id.get(one.id.lower())
        status = response.get("status") if response is not None else None
        if response is None or not isinstance(status, int):
            out[one.index] = AmbiguousOutcomeError(
                "Graph's $batch answer has no status for this message; it may have been created",
                reason_code="timeout-after-send",
            )
        elif 200 <= status < 300:
            out[one.index] = None
        else:
            out[one.index] = _error(status, response, tenant=tenant)
    return out


def _error(status: int, response: dict[str, Any], *, tenant: str) -> MailferryError:
    body = response.get("body")
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    text = error.get("message", "") if isinstance(error, dict) else ""
    headers = response.get("headers")
    retry_after = None
    if isinstance(headers, dict):
        retry_after = next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    return classify_response(
        status,
        code if isinstance(code, str) else None,
        str(text),
        retry_after=parse_retry_after(retry_after),
        tenant=tenant,
    )
