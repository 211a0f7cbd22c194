"""The EWS, GRAPH and ENTRA ID EMULATORS share one server life cycle (testkit's loopback_http).

Each emulator is served, answers over real HTTP(S), and after ``stop()`` (or leaving the
``with``) its port and its identity emulator's port take no connection; ``stop()`` twice is fine.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mailferry_testkit.certs import make_test_pki
from mailferry_testkit.ews_emulator.oauth import TokenIssuer
from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator
from mailferry_testkit.identity_emulator import IdentityEmulator, IdentityHost
from mailferry_testkit.loopback_http import LoopbackHttpEmulator

EMULATORS: list[type[LoopbackHttpEmulator]] = [EwsEmulator, GraphEmulator, IdentityEmulator]


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def make(kind: str, tmp_path: Path) -> LoopbackHttpEmulator:
    if kind == "ews":
        return EwsEmulator()
    if kind == "ews-tls":
        return EwsEmulator(tls=make_test_pki(tmp_path))
    if kind == "graph":
        return GraphEmulator()
    return IdentityEmulator((TokenIssuer("https://graph.microsoft.com"),))


def ca_of(emulator: LoopbackHttpEmulator) -> ssl.SSLContext | bool:
    pki = emulator.tls_pki()
    return ssl.create_default_context(cafile=str(pki.ca_file)) if pki is not None else False


@pytest.mark.parametrize("emulator_class", EMULATORS, ids=lambda c: c.__name__)
def test_no_emulator_has_its_own_server_life_cycle(emulator_class: type[LoopbackHttpEmulator]) -> None:
    assert issubclass(emulator_class, LoopbackHttpEmulator)
    own = {"start", "stop", "__enter__", "__exit__", "port", "origin"} & set(vars(emulator_class))
    assert not own, f"{emulator_class.__name__} runs its own server life cycle: {sorted(own)}"


@pytest.mark.parametrize("kind", ["ews", "ews-tls", "graph", "identity"])
def test_served_then_stopped_for_good(kind: str, tmp_path: Path) -> None:
    emulator = make(kind, tmp_path)
    with emulator:
        assert emulator.origin.startswith("https://" if kind in ("ews-tls", "identity") else "http://")
        reply = httpx.get(f"{emulator.origin}/nothing-here", verify=ca_of(emulator), timeout=5)
        assert reply.status_code in (400, 401, 404, 405)
        port = emulator.port
    assert refuses(port)
    assert not emulator.running
    emulator.stop()  # again: nothing left to stop, no error


@pytest.mark.parametrize("make_host", [EwsEmulator, GraphEmulator], ids=["ews", "graph"])
def test_stopping_an_emulator_stops_its_identity_emulator(make_host: Callable[[], IdentityHost]) -> None:
    host = make_host()
    with host:
        host.oauth.add_app("app", "secret", "contoso", principal="app")
        authority = host.authority("contoso")
        discovery = httpx.get(
            f"{authority}/v2.0/.well-known/openid-configuration",
            verify=ssl.create_default_context(cafile=str(host.identity_ca_file)),
            timeout=5,
        )
        assert discovery.status_code == 200
        identity_port = host.identity.port
    assert refuses(identity_port)
