"""The exchangelib names mailferry relies on still exist: an upgrade that renames one fails here
instead of silently losing per-target TLS, the pool fix or the token endpoint."""

from __future__ import annotations

import ast
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from exchangelib.protocol import BaseProtocol
from exchangelib.services import CreateItem
from packaging.specifiers import SpecifierSet

from mailferry.exchange.ews.exchangelib_patches import PATCHED, StreamedCreateItem


@pytest.mark.parametrize(("owner", "name"), PATCHED, ids=[f"{o.__name__}.{n}" for o, n in PATCHED])
def test_the_patched_name_exists(owner: type, name: str) -> None:
    assert hasattr(owner, name), f"exchangelib {version('exchangelib')} has no {owner.__name__}.{name}"


def test_sessions_are_made_through_create_session() -> None:
    """The TLS adapter is mounted by wrapping ``create_session`` on the instance: every path
    that makes a session must call it through ``self``."""
    for method in ("increase_poolsize", "renew_session"):
        assert "self.create_session()" in inspect.getsource(getattr(BaseProtocol, method)), method


def test_the_overridden_and_called_signatures_are_the_ones_relied_on() -> None:
    """``StreamedCreateItem.wrap`` passes ``content`` and ``api_version`` by name, and the
    streamed path calls ``CreateItem.call`` with these keywords: a rename fails here."""
    wrap = inspect.signature(CreateItem.wrap).parameters
    assert {"content", "api_version"} <= set(wrap), wrap
    call = inspect.signature(CreateItem.call).parameters
    assert {"items", "folder", "message_disposition", "send_meeting_invitations"} <= set(call), call
    assert inspect.signature(StreamedCreateItem.wrap).parameters.keys() == wrap.keys()


def test_exchangelib_has_an_upper_bound_and_the_installed_one_is_within_it() -> None:
    """An upgrade past the bound is a deliberate step: rerun this file against the new version."""
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    [spec] = [d for d in project["project"]["dependencies"] if d.startswith("exchangelib")]
    bounds = SpecifierSet(spec.removeprefix("exchangelib").split(";")[0].split("#")[0].strip())
    assert any(s.operator in ("<", "<=", "==", "~=") for s in bounds), f"no upper bound: {spec}"
    assert version("exchangelib") in bounds, f"exchangelib {version('exchangelib')} outside {bounds}"


def _overrides(tree: ast.Module, documented: set[str]) -> list[str]:
    """Classes derived from, and attributes assigned on, names imported from exchangelib."""
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("exchangelib")
        for alias in node.names
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            found += [f"class {node.name}({b})" for b in sorted((bases & imported) - documented)]
        elif isinstance(node, ast.Assign | ast.AugAssign):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in imported:
                    found.append(f"{t.value.id}.{t.attr} = ...")
    return found


def test_no_module_but_the_patches_one_subclasses_or_assigns_into_exchangelib() -> None:
    """Every override of exchangelib lives in exchangelib_patches.py (issue 16 item 4): no other
    module subclasses an exchangelib class (but the documented extension points) or sets an
    attribute on one."""
    root = Path(__file__).resolve().parents[2]
    documented = {"ExtendedProperty", "Message"}  # custom extended properties, exchangelib's docs
    offenders = [
        f"{path.name}: {what}"
        for folder in ("mailferry", "producers", "streams", "consumers")
        for path in (root / folder).rglob("*.py")
        if path.name != "exchangelib_patches.py" and "exchangelib" in path.read_text()
        for what in _overrides(ast.parse(path.read_text()), documented)
    ]
    assert offenders == []
