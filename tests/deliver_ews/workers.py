"""The EWS EMULATOR set-up of the delivery-worker tests: an emulator holding the service
accounts and the mailboxes, and the ``[[targets]]`` TOML pointing a worker at it (basic auth)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from mailferry_testkit.ews_emulator.server import EwsEmulator

SERVICE_ACCOUNT, SERVICE_PASSWORD = "svc-mailferry", "s3cret"


@contextmanager
def exchange_with(
    mailboxes: Iterable[str], accounts: Iterable[str] = (SERVICE_ACCOUNT,)
) -> Iterator[EwsEmulator]:
    """A running EWS EMULATOR with ``accounts`` and the tenant's postmaster plus ``mailboxes``."""
    with EwsEmulator() as emulator:
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
