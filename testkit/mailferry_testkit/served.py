"""Something a test starts and must stop again, whatever happens: a child-process server or an
in-process emulator. ``with`` stops it even when the test fails half-way."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Served:
    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
