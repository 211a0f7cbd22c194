"""What the EWS EMULATOR (not Microsoft Exchange) holds: mailboxes, their aliases, items.

Thread-safe, since the HTTP server answers each request on its own thread. Tests read
items back through ``EwsEmulator.items`` to check what a client really wrote.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime

from mailferry_testkit.ews_emulator.soap import ItemError

FOLDERS = ("root", "msgfolderroot", "inbox")


@dataclass(frozen=True)
class StoredItem:
    """One item as a client created it (MIME kept byte for byte)."""

    item_id: str
    mailbox: str  # primary SMTP address
    folder: str
    mime: bytes
    is_read: bool
    message_flags: int | None  # PR_MESSAGE_FLAGS 0x0E07
    delivery_time: datetime | None  # PR_MESSAGE_DELIVERY_TIME 0x0E06
    internet_message_id: str | None
    impersonated_as: str | None  # ConnectingSID value the request carried
    written_by: str  # the authenticated account
    extended: dict[tuple[str, str], str] = field(default_factory=dict)  # (tag, type) -> value


@dataclass
class Mailbox:
    primary: str
    aliases: tuple[str, ...]
    display_name: str
    items: list[StoredItem] = field(default_factory=list)


class Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mailboxes: dict[str, Mailbox] = {}  # primary, lower-case
        self._by_address: dict[str, str] = {}  # any address, lower-case -> primary key
        self._ids = itertools.count(1)
        self.keep_bodies = True  # False: keep items without their MIME (long benchmarks)

    def add_mailbox(
        self, address: str, aliases: tuple[str, ...] = (), display_name: str | None = None
    ) -> None:
        with self._lock:
            key = address.lower()
            box = Mailbox(address, tuple(aliases), display_name or address.split("@")[0])
            self._mailboxes[key] = box
            for each in (address, *aliases):
                self._by_address[each.lower()] = key

    def primary(self, address: str) -> Mailbox | None:
        """The mailbox whose *primary* address this is (impersonation matches only that)."""
        with self._lock:
            return self._mailboxes.get(address.lower())

    def by_any_address(self, address: str) -> Mailbox | None:
        with self._lock:
            key = self._by_address.get(address.lower())
            return self._mailboxes.get(key) if key else None

    def search(self, prefix: str, *, proxies: bool) -> list[Mailbox]:
        """Ambiguous name resolution as Exchange does it: a *prefix* match, primary only
        unless ``proxies`` (the ``smtp:`` form), which also searches the aliases."""
        wanted = prefix.lower()
        with self._lock:
            found = []
            for box in self._mailboxes.values():
                candidates = [box.primary, *(box.aliases if proxies else ())]
                if proxies or "@" not in wanted:
                    candidates.append(box.display_name)
                if any(c.lower().startswith(wanted) for c in candidates):
                    found.append(box)
            return sorted(found, key=lambda b: b.primary.lower())

    def add_item(self, item: StoredItem) -> None:
        if not self.keep_bodies:
            item = dataclasses.replace(item, mime=b"")
        with self._lock:
            self._mailboxes[item.mailbox.lower()].items.append(item)

    def new_item_id(self, mailbox: str) -> str:
        return base64.b64encode(f"item|{mailbox.lower()}|{next(self._ids)}".encode()).decode()

    def items(self, address: str) -> list[StoredItem]:
        box = self.by_any_address(address)
        if box is None:
            raise KeyError(address)
        with self._lock:
            return list(box.items)

    def find(self, mailbox: str, folder: str, conditions: list[tuple[object, str]]) -> list[StoredItem]:
        """Items of ``folder`` meeting every condition: ``("message-id", value)`` or
        ``((property name, type), value)`` on an extended property set at creation."""

        def meets(item: StoredItem, what: object, value: str) -> bool:
            if what == "message-id":
                return item.internet_message_id == value
            return isinstance(what, tuple) and item.extended.get(what) == value

        with self._lock:
            box = self._mailboxes[mailbox.lower()]
            return [i for i in box.items if i.folder == folder and all(meets(i, w, v) for w, v in conditions)]

    def count(self, mailbox: str, folder: str) -> tuple[int, int]:
        with self._lock:
            items = [i for i in self._mailboxes[mailbox.lower()].items if i.folder == folder]
            return len(items), sum(1 for i in items if not i.is_read)


def folder_id(mailbox: str, folder: str) -> str:
    return base64.b64encode(f"folder|{mailbox.lower()}|{folder}".encode()).decode()


def parse_folder_id(value: str) -> tuple[str, str]:
    """``(mailbox, folder)`` of an Id this emulator handed out; ErrorInvalidIdMalformed otherwise."""
    try:
        kind, mailbox, folder = base64.b64decode(value, validate=True).decode().split("|")
    except ValueError:
        raise ItemError("ErrorInvalidIdMalformed", "Id is malformed.") from None
    if kind != "folder" or folder not in FOLDERS:
        raise ItemError("ErrorInvalidIdMalformed", "Id is malformed.")
    return mailbox, folder
