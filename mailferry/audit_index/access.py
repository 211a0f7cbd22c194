"""How a reader reaches an index: the local file when this machine has one, else a replica
over HTTP, else nothing (the caller then scans a bounded time range)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mailferry.audit_index.store import FILE_NAME, IndexStore, Position, Sighting

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
TIMEOUT_S = 2.0


class IndexAccess(Protocol):
    name: str

    def lookup(self, hashes: Sequence[int]) -> set[Position]: ...

    def first_sighting(self, hashes: Sequence[int]) -> Sighting | None: ...


class LocalIndex:
    def __init__(self, store: IndexStore) -> None:
        self._store = store
        self.name = str(store.path)

    def lookup(self, hashes: Sequence[int]) -> set[Position]:
        return self._store.lookup(hashes)

    def first_sighting(self, hashes: Sequence[int]) -> Sighting | None:
        return self._store.first_sighting(hashes)


class RemoteIndex:
    def __init__(self, url: str) -> None:
        import httpx  # only when a replica is configured: `audit trace` start-up time

        self.name = url.rstrip("/")
        self._client: httpx.Client = httpx.Client(base_url=self.name, timeout=TIMEOUT_S)

    def _ask(self, hashes: Sequence[int]) -> dict[str, object]:
        response = self._client.get("/positions", params=[("k", str(h)) for h in hashes])
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    def lookup(self, hashes: Sequence[int]) -> set[Position]:
        pairs = self._ask(hashes)["positions"]
        assert isinstance(pairs, list)
        return {Position(int(p), int(o)) for p, o in pairs}

    def first_sighting(self, hashes: Sequence[int]) -> Sighting | None:
        found = self._ask(hashes)["first_sighting"]
        if not isinstance(found, list):
            return None
        return Sighting(int(found[0]), Position(int(found[1]), int(found[2])))

    def healthy(self) -> bool:
        import httpx

        try:
            return self._client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False


def open_index(folder: Path, urls: Sequence[str], topic: str) -> IndexAccess | None:
    """The first index that answers: the local file, then each replica in order."""
    if (folder / FILE_NAME).exists():
        try:
            return LocalIndex(IndexStore(folder, topic=topic, readonly=True))
        except Exception as exc:  # another topic (IndexMismatchError), a damaged file (sqlite3)
            log.warning("local audit index not usable: %s", exc)
    for url in urls:
        remote = RemoteIndex(url)
        if remote.healthy():
            return remote
        log.warning("audit index replica %s does not answer", url)
    return None
