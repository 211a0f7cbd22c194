"""The index file: SQLite, one writer (the indexer), any number of readers.

Rows are (key hash, partition, offset) in a clustered primary key, so a lookup is one
B-tree descent per key. The offsets indexed so far live in the same file and are written in
the same transaction as the rows, so a crashed indexer resumes exactly where its last
commit ended: no event is indexed twice or skipped. WAL mode lets ``audit trace`` read
while the indexer writes.

Retention: ``purge`` drops the rows below a partition's log start. It scans the table, so
the indexer runs it rarely; readers ignore positions below the log start in between.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "audit-index.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS position (
  k INTEGER NOT NULL, p INTEGER NOT NULL, o INTEGER NOT NULL, PRIMARY KEY (k, p, o)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sighting (
  k INTEGER PRIMARY KEY, first_at INTEGER NOT NULL, p INTEGER NOT NULL, o INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS progress (p INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_LOOKUP_CHUNK = 500  # SQLite's default limit of bound parameters is 999


@dataclass(frozen=True, order=True)
class Position:
    partition: int
    offset: int


@dataclass(frozen=True)
class Sighting:
    first_at_ms: int
    position: Position


class IndexMismatchError(Exception):
    """The file indexes another topic (another prefix); it is not silently reused."""


class IndexStore:
    def __init__(self, folder: Path, *, topic: str, readonly: bool = False) -> None:
        self.path = folder / FILE_NAME
        if readonly:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('topic', ?)", (topic,))
            self._db.commit()
            self.path.chmod(0o600)
        self._db.execute("PRAGMA cache_size=-262144")  # 256 MiB
        row = self._db.execute("SELECT value FROM meta WHERE name = 'topic'").fetchone()
        if row is not None and row[0] != topic:
            raise IndexMismatchError(f"{self.path} indexes topic {row[0]!r}, not {topic!r}")

    def close(self) -> None:
        self._db.close()

    def progress(self) -> dict[int, int]:
        """Per partition, the next offset to index."""
        return dict(self._db.execute("SELECT p, next_offset FROM progress").fetchall())

    def add(
        self,
        rows: Iterable[tuple[int, int, int]],
        sightings: Iterable[tuple[int, int, int, int]],
        progress: dict[int, int],
    ) -> None:
        """Rows (hash, partition, offset), first sightings (hash, at ms, partition, offset) and
        the new progress, in one transaction."""
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO position VALUES (?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO sighting VALUES (?, ?, ?, ?)", sightings)
            self._db.executemany(
                "INSERT INTO progress VALUES (?, ?) "
                "ON CONFLICT(p) DO UPDATE SET next_offset = excluded.next_offset",
                progress.items(),
            )

    def lookup(self, hashes: Sequence[int]) -> set[Position]:
        found: set[Position] = set()
        for start in range(0, len(hashes), _LOOKUP_CHUNK):
            chunk = hashes[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for p, o in self._db.execute(f"SELECT p, o FROM position WHERE k IN ({marks})", chunk):
                found.add(Position(p, o))
        return found

    def first_sighting(self, hashes: Sequence[int]) -> Sighting | None:
        if not hashes:
            return None
        marks = ",".join("?" * len(hashes[:_LOOKUP_CHUNK]))
        row = self._db.execute(
            f"SELECT first_at, p, o FROM sighting WHERE k IN ({marks}) ORDER BY first_at LIMIT 1",
            hashes[:_LOOKUP_CHUNK],
        ).fetchone()
        return Sighting(row[0], Position(row[1], row[2])) if row else None

    def purge(self, log_start: dict[int, int]) -> int:
        """Drop rows below each partition's log start; the number of rows dropped."""
        dropped = 0
        with self._db:
            for partition, start in log_start.items():
                cursor = self._db.execute("DELETE FROM position WHERE p = ? AND o < ?", (partition, start))
                dropped += cursor.rowcount
        return dropped

    def row_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM position").fetchone()[0])
