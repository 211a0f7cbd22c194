"""The thread pools of the targets, one per (tenant, target), sized by its ``concurrency``.

exchangelib and the other target clients are synchronous, so each target gets threads of
its own: one slow or failing mailbox server never holds up the others. Finished work is
handed back through one queue, read by the worker's main loop only (the Kafka consumer is
not thread-safe).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from mailferry.observe import metrics

Tag = TypeVar("Tag")
Out = TypeVar("Out")


class TargetPools(Generic[Tag, Out]):
    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], ThreadPoolExecutor] = {}
        self._done: queue.Queue[tuple[Tag, Future[Out], int]] = queue.Queue()
        self.running = 0  # records, not batches

    def submit(
        self, key: tuple[str, str], workers: int, work: Callable[[], Out], tag: Tag, weight: int = 1
    ) -> None:
        """Run ``work`` (``weight`` records) in the pool of ``key`` (``workers`` threads)."""
        pool = self._pools.get(key)
        if pool is None:
            tenant, target = key
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"deliver-{tenant}-{target}")
            self._pools[key] = pool
        future = pool.submit(work)
        self.running += weight
        metrics.IN_FLIGHT.set(self.running)
        done = self._done

        def report(finished: Future[Out]) -> None:
            done.put((tag, finished, weight))

        future.add_done_callback(report)

    def finished(self, block_s: float) -> Iterator[tuple[Tag, Future[Out]]]:
        """What finished since the last call, waiting up to ``block_s`` for the first."""
        timeout = block_s
        while True:
            try:
                tag, future, weight = self._done.get(timeout=timeout) if timeout else self._done.get_nowait()
            except queue.Empty:
                return
            timeout = 0.0
            self.running -= weight
            metrics.IN_FLIGHT.set(self.running)
            yield tag, future

    def stop(self, *, wait: bool) -> None:
        """Cancel what has not started; with ``wait``, also wait for what runs and drop the pools."""
        for pool in self._pools.values():
            pool.shutdown(wait=wait, cancel_futures=True)
        if wait:
            self._pools.clear()
