"""Loading the ``.avsc`` files that ship in the package, fully expanded.

A schema may name a record defined in another file (the dead-letter record embeds a
delivery). Expanding those references here gives every schema a self-contained form, which
is what fingerprints, the history snapshots and the compatibility checker all need.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

Schema = Any

_FILES = (
    "mailbox_config",
    "fetch_state",
    "raw_message",
    "raw_batch",
    "delivery",
    "delivery_batch",
    "audit_event",
    "audit_batch",
    "dead_letter",
)


def _raw(name: str) -> Schema:
    text = resources.files("mailferry.schemas").joinpath(f"{name}.avsc").read_text("utf-8")
    return json.loads(text)


def _named_records() -> dict[str, Schema]:
    named: dict[str, Schema] = {}

    def collect(node: Schema, namespace: str | None) -> None:
        if isinstance(node, dict):
            ns = node.get("namespace", namespace)
            if node.get("type") in ("record", "enum", "fixed") and "name" in node:
                full = node["name"] if "." in node["name"] else f"{ns}.{node['name']}"
                named.setdefault(full, node | {"namespace": ns})
            for value in node.values():
                collect(value, ns)
        elif isinstance(node, list):
            for item in node:
                collect(item, namespace)

    for name in _FILES:
        collect(_raw(name), None)
    return named


def _expand(node: Schema, named: dict[str, Schema], namespace: str, seen: set[str]) -> Schema:
    if isinstance(node, str):
        full = node if "." in node else f"{namespace}.{node}"
        if full in named and full not in seen:
            seen.add(full)
            return _expand(named[full], named, namespace, seen)
        return node
    if isinstance(node, list):
        return [_expand(item, named, namespace, seen) for item in node]
    if isinstance(node, dict):
        ns = node.get("namespace", namespace)
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            seen.add(node["name"] if "." in node["name"] else f"{ns}.{node['name']}")
        out = {}
        for key, value in node.items():
            if key in ("type", "items", "values", "fields"):
                out[key] = _expand(value, named, ns, seen)
            else:
                out[key] = value
        return out
    return node


@cache
def expanded(name: str) -> Schema:
    """The schema ``name`` (file stem) with every named reference written out."""
    root = _raw(name)
    return _expand(root, _named_records(), root.get("namespace", ""), set())


def history(name: str) -> list[tuple[str, Schema]]:
    """Every released version of ``name``, oldest first, as (version label, schema)."""
    folder = resources.files("mailferry.schemas").joinpath("history", name)
    if not folder.is_dir():
        return []
    versions = [p for p in folder.iterdir() if p.name.endswith(".avsc")]
    versions.sort(key=lambda p: int(p.name.removeprefix("v").removesuffix(".avsc")))
    return [(p.name.removesuffix(".avsc"), json.loads(p.read_text("utf-8"))) for p in versions]


SCHEMA_FILES = _FILES
