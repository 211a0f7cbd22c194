"""The EMULATOR set-up of the delivery-worker tests: an EWS EMULATOR holding the service
accounts and the mailboxes, a GRAPH EMULATOR holding the app and the mailboxes, and the
``[[targets]]`` TOML pointing a worker at either."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from mailferry_testkit.ews_emulator.server import EwsEmulator
from mailferry_testkit.graph_emulator import GraphEmulator

SERVICE_ACCOUNT, SERVICE_PASSWORD = "svc-mailferry", "s3cret"
GRAPH_TENANT, GRAPH_APP, GRAPH_SECRET = "acme-tenant", "mailferry-app", "app secret"


@contextmanager
def exchange_with(
    mailboxes: Iterable[str], accounts: Iterable[str] = (SERVICE_ACCOUNT,), **options: Any
) -> Iterator[EwsEmulator]:
    """A running EWS EMULATOR (``options`` go to it) with ``accounts`` and the tenant's
    postmaster plus ``mailboxes``."""
    with EwsEmulator(**options) as emulator:
        for account in accounts:
            emulator.add_account(account, SERVICE_PASSWORD)
        for address in ("postmaster@acme.example", *mailboxes):
            emulator.add_mailbox(address)
        yield emulator


def ews_targets(
    exchange: EwsEmulator, *, username: str = SERVICE_ACCOUNT, timeout: str = "5s", concurrency: int = 2
) -> str:
    return (
        f'[[targets]]\nname = "exchange"\nkind = "ews"\nendpoint = "{exchange.url}"\n'
        f'version = "Exchange2016"\nauth = "basic"\nusername = "{username}"\n'
        f'password = "{SERVICE_PASSWORD}"\n'
        f'timeout = "{timeout}"\nconcurrency = {concurrency}\n'
    )


@contextmanager
def graph_with(mailboxes: Iterable[str]) -> Iterator[GraphEmulator]:
    """A running GRAPH EMULATOR with the app and the tenant's postmaster plus ``mailboxes``."""
    with GraphEmulator() as emulator:
        emulator.add_app(GRAPH_APP, GRAPH_SECRET, GRAPH_TENANT)
        for address in ("postmaster@acme.example", *mailboxes):
            emulator.add_mailbox(address)
        yield emulator


def graph_targets(api: GraphEmulator, mode: str) -> str:
    return (
        f'[[targets]]\nname = "graph"\nkind = "graph"\nmode = "{mode}"\nbase_url = "{api.base_url}"\n'
        f'authority = "{api.authority(GRAPH_TENANT)}"\nca_file = "{api.identity_ca_file}"\n'
        f'tenant_id = "{GRAPH_TENANT}"\n'
        f'client_id = "{GRAPH_APP}"\nclient_secret = "{GRAPH_SECRET}"\ntimeout = "5s"\nconcurrency = 2\n'
    )
