"""The scale scenario: many mailboxes on one ``mailferry fetch`` worker (not yet measurable)."""

from __future__ import annotations

from pathlib import Path

from mailferry_runner import not_runnable_reason


def run(work: Path, *, mailboxes: int, interval: float, seconds: float) -> None:
    reason = not_runnable_reason()
    print(f"scale scenario ({mailboxes} mailboxes, {interval:g} s poll): {reason or 'not implemented yet'}")
