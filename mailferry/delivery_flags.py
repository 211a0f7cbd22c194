"""Flags a delivery record carries from the stream app to the delivery worker.

They are part of the ``delivery`` schema's contract (``flags: array<string>``), so both stages
name them from here rather than from each other's modules.
"""

from __future__ import annotations

BYPASS_DEDUP = "bypass-dedup"
"""A replay asked to deliver again: the stream skipped its dedup table, and the worker keys its
ledger by this delivery (one per replayed raw record and recipient) instead of by the dedup key,
so the replay delivers once more but a crash during the replay still delivers only once."""
