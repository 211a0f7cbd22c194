"""Fixtures for the fetch tests: a real Dovecot on loopback with a fresh test CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailferry_testkit.dovecot import DovecotServer


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """One Dovecot per test module; tests use their own user names so they don't collide."""
    server = DovecotServer(Path(tmp_path_factory.mktemp("dovecot"))).start()
    try:
        yield server
    finally:
        server.remove()
