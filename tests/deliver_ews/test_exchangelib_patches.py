"""The exchangelib names mailferry relies on still exist: an upgrade that renames one fails here
instead of silently losing per-target TLS, the pool fix or the token endpoint."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from exchangelib.protocol import BaseProtocol

from mailferry.exchange.ews.exchangelib_patches import PATCHED


@pytest.mark.parametrize(("owner", "name"), PATCHED, ids=[f"{o.__name__}.{n}" for o, n in PATCHED])
def test_the_patched_name_exists(owner: type, name: str) -> None:
    assert hasattr(owner, name), f"exchangelib {version('exchangelib')} has no {owner.__name__}.{name}"


def test_sessions_are_made_through_create_session() -> None:
    """The TLS adapter is mounted by wrapping ``create_session`` on the instance: every path
    that makes a session must call it through ``self``."""
    for method in ("increase_poolsize", "renew_session"):
        assert "self.create_session()" in inspect.getsource(getattr(BaseProtocol, method)), method
