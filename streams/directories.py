"""The tenants' live directories (EWS/Graph look-ups) as the stream sees them: cached, and
called on one thread of their own.

Look-ups block, so the router runs in that thread when a tenant has a directory (or when
the headers must be fetched from the blob store); one thread keeps look-ups in order and
the caches free of locks. A directory that cannot even be set up (bad target settings) is
logged and left out: routing then keeps addresses as they are rather than dead-lettering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mailferry.config.models import MailferryConfig, Tenant
from mailferry.directory import CachedDirectory, Directory
from mailferry.errors import OperatorError, PermanentError
from mailferry.streams.router import DirectoryFor

log = logging.getLogger(__name__)
NEGATIVE_TTL = 300.0  # seconds a 'no such mailbox' answer is kept
T = TypeVar("T")


class Directories:
    def __init__(self, config: MailferryConfig, directory_for: DirectoryFor) -> None:
        self.config = config
        self._directory_for = directory_for
        self._cached: dict[str, Directory | None] = {}
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="directory")

    def __call__(self, tenant: Tenant) -> Directory | None:
        """The tenant's live directory behind a TTL cache, or None when it has none."""
        if tenant.id not in self._cached:
            try:
                inner = self._directory_for(tenant)
            except (PermanentError, OperatorError) as exc:
                log.warning("stream: no directory for tenant %s: %s", tenant.id, exc)
                inner = None
            ttl = self.config.stream.directory_cache_ttl.total_seconds()
            self._cached[tenant.id] = (
                CachedDirectory(inner.lookup, ttl=ttl, negative_ttl=min(ttl, NEGATIVE_TTL))
                if inner is not None
                else None
            )
        return self._cached[tenant.id]

    def has(self, tenant_id: str) -> bool:
        try:
            tenant = self.config.tenant(tenant_id)
        except KeyError:
            return False
        return self(tenant) is not None

    async def run(self, call: Callable[[], T]) -> T:
        """``call`` on the look-up thread."""
        return await asyncio.get_running_loop().run_in_executor(self._lookups, call)
