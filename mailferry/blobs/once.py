"""One fetched, verified copy of a blob for all the opens of one delivery attempt.

Targets open a message more than once: the EWS target measures it and then streams it,
SMTP reads the envelope sender and then sends it. With kinds ``kafka`` and ``s3`` each
open would fetch the whole blob again and check it again (about 8 s for 150 MB from the
embedded broker here); with ``local`` it would hash the file again. The first open fetches
and checks; later ones reopen that copy through ``/proc/self/fd``, each with an offset of
its own.
"""

from __future__ import annotations

import threading
from typing import BinaryIO, Protocol


class BlobOpener(Protocol):
    def open(self, reference: str) -> BinaryIO: ...


class ReadOnce:
    def __init__(self, store: BlobOpener) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._reference: str | None = None
        self._copy: BinaryIO | None = None

    def open(self, reference: str) -> BinaryIO:
        with self._lock:
            if self._copy is None or self._reference != reference:
                self._release()
                self._copy = self._store.open(reference)
                self._reference = reference
            try:
                return open(f"/proc/self/fd/{self._copy.fileno()}", "rb")
            except OSError:  # no /proc: fetch again rather than share one offset
                return self._store.open(reference)

    def _release(self) -> None:
        if self._copy is not None:
            self._copy.close()
        self._copy = self._reference = None

    def close(self) -> None:
        with self._lock:
            self._release()
