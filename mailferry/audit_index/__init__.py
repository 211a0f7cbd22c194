"""The audit index: where in the audit topic each message's events are.

The audit topic stays the only source of truth; the index is a cache of positions rebuilt
from it, so that ``audit trace`` reads a handful of offsets instead of the whole retained
topic (about 60,000 events/s, so a day per trace at a year's retention).

- ``keys``: which names an event is found under (pure).
- ``store``: the SQLite file of (key hash, partition, offset) and per-partition progress.
- ``indexer``: the ``mailferry audit index`` role that keeps the store up to date.
- ``access``: how a reader reaches an index: the local file, or a replica over HTTP.
- ``server``: the replica's small HTTP API.
- ``positions``: reading the events at known positions back from Kafka.
"""
