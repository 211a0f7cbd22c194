"""JSON batching (``POST /v1.0/$batch``, ``/beta/$batch``) for the GRAPH EMULATOR — not Microsoft Graph.

As Graph documents it: a ``requests`` array of 1 to 20 steps, each with an ``id`` (a string,
unique in the batch without regard to case), a ``method``, a ``url`` relative to the version
of the batch, optional ``headers`` (required with a body, and then with a Content-Type) and
an optional ``body``: a JSON value for ``application/json``, else a base64 string of the
bytes. ``dependsOn`` names earlier steps; a batch with dependencies runs in order and a step
whose dependency failed gets 424. Without dependencies up to four steps run at once, as
Graph dispatches them, each counted against its mailbox like a request of its own (so a step
can be throttled with its own 429 and Retry-After while the others succeed). The answer's
``responses`` come in an order other than the request's (reversed), so a client must match
them by ``id``. Anything malformed refuses the whole batch with 400 and runs nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_STEPS = 20
MAX_BODY = 4 * 1024 * 1024  # Graph's request size limit, for the batch as a whole
PARALLEL = 4  # steps Graph dispatches at once
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
STEP_MEMBERS = frozenset({"id", "method", "url", "headers", "body", "dependsOn"})

Answer = tuple[int, bytes, dict[str, str]]  # status, JSON body, headers
Dispatch = Callable[[str, str, dict[str, list[str]], HTTPMessage, bytes], Answer]


class BatchRefused(Exception):
    """The batch as a whole is refused (400, or 413 over the size limit): nothing runs."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.text = status, code, message


@dataclass(frozen=True)
class Step:
    id: str
    method: str
    path: str  # with the version prefix, as a request outside a batch has it
    query: dict[str, list[str]]
    headers: HTTPMessage
    body: bytes
    depends_on: tuple[str, ...]


def _refuse(message: str) -> BatchRefused:
    return BatchRefused(400, "BadRequest", message)


def parse(version: str, content_type: str, body: bytes, authorization: str) -> list[Step]:
    """The steps of a batch request, or ``BatchRefused``."""
    if len(body) > MAX_BODY:
        raise BatchRefused(413, "RequestEntityTooLarge", "The batch request is over the 4 MB limit.")
    if not content_type.startswith("application/json"):
        raise _refuse("A batch request takes application/json.")
    try:
        document = json.loads(body)
    except ValueError:
        raise _refuse("The batch request body is not JSON.") from None
    if not isinstance(document, dict) or set(document) != {"requests"}:
        raise _refuse("A batch request is an object with a requests array only.")
    requests = document["requests"]
    if not isinstance(requests, list) or not requests:
        raise _refuse("requests must be a non-empty array.")
    if len(requests) > MAX_STEPS:
        raise _refuse(f"Number of batch request steps exceeds the maximum of {MAX_STEPS}.")
    steps: list[Step] = []
    for raw in requests:
        step = _step(version, raw, authorization)
        seen = {s.id.lower() for s in steps}
        if step.id.lower() in seen:
            raise _refuse(f"Batch request id '{step.id}' is not unique.")
        unknown = [d for d in step.depends_on if d.lower() not in seen]
        if unknown:
            raise _refuse(
                f"Request '{step.id}' depends on '{unknown[0]}', not an earlier request of the batch."
            )
        steps.append(step)
    return steps


def _step(version: str, raw: Any, authorization: str) -> Step:
    if not isinstance(raw, dict):
        raise _refuse("Each batch request step is an object.")
    unknown = set(raw) - STEP_MEMBERS
    if unknown:
        raise _refuse(f"Unknown members {sorted(unknown)} in a batch request step.")
    step_id, method, url = raw.get("id"), raw.get("method"), raw.get("url")
    if not isinstance(step_id, str) or not step_id.strip():
        raise _refuse("Each batch request step needs an id, a non-empty string.")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _refuse(f"Request '{step_id}': method {method!r} is not an HTTP method Graph takes.")
    if not isinstance(url, str) or not url or "://" in url or url.startswith(("/v1.0/", "/beta/")):
        raise _refuse(f"Request '{step_id}': url must be relative to /{version}.")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _refuse(f"Request '{step_id}': headers must be an object of strings.")
    message = HTTPMessage()
    for name, value in headers.items():
        message[name] = value
    message["Authorization"] = authorization
    body = _body(step_id, raw, message)
    depends_on = raw.get("dependsOn", [])
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise _refuse(f"Request '{step_id}': dependsOn must be an array of ids.")
    split = urlsplit("/" + url.lstrip("/"))
    return Step(
        step_id,
        method.upper(),
        f"/{version}{split.path}",
        parse_qs(split.query),
        message,
        body,
        tuple(depends_on),
    )


def _body(step_id: str, raw: dict[str, Any], headers: HTTPMessage) -> bytes:
    """The bytes the step's request carries: JSON for application/json, else base64-decoded."""
    if "body" not in raw:
        return b""
    content_type = headers.get("Content-Type") or ""
    if not content_type:
        raise _refuse(f"Request '{step_id}' has a body but no Content-Type header.")
    value = raw["body"]
    if content_type.startswith("application/json"):
        if not isinstance(value, dict | list):
            raise _refuse(f"Request '{step_id}': an application/json body must be a JSON object or array.")
        return json.dumps(value).encode()
    if not isinstance(value, str):
        raise _refuse(f"Request '{step_id}': a {content_type} body must be a base64 string.")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise _refuse(f"Request '{step_id}': the {content_type} body is not base64.") from None


def run(steps: list[Step], dispatch: Dispatch) -> bytes:
    """Run the steps (in order when any depends on another, else up to four at once) and the
    JSON answer, its responses in reverse order."""
    answers: dict[str, Answer] = {}
    if any(s.depends_on for s in steps):
        for step in steps:
            failed = [d for d in step.depends_on if not 200 <= answers[_key(steps, d)][0] < 300]
            answers[step.id] = _failed_dependency(failed[0]) if failed else _dispatch(dispatch, step)
    else:
        with ThreadPoolExecutor(PARALLEL) as pool:
            for step, answer in zip(steps, pool.map(lambda s: _dispatch(dispatch, s), steps), strict=True):
                answers[step.id] = answer
    responses = []
    for step in reversed(steps):
        status, body, headers = answers[step.id]
        responses.append(
            {
                "id": step.id,
                "status": status,
                "headers": {"Content-Type": "application/json", **headers},
                "body": json.loads(body) if body else None,
            }
        )
    return json.dumps({"responses": responses}).encode()


def _key(steps: list[Step], wanted: str) -> str:
    return next(s.id for s in steps if s.id.lower() == wanted.lower())


def _dispatch(dispatch: Dispatch, step: Step) -> Answer:
    return dispatch(step.method, step.path, step.query, step.headers, step.body)


def _failed_dependency(dependency: str) -> Answer:
    error = {"error": {"code": "FailedDependency", "message": f"Request '{dependency}' failed."}}
    return 424, json.dumps(error).encode(), {}
