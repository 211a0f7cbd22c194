"""A server the tests run as a child process (Dovecot, s3proxy, the schema registry).

One way to end it for all of them: SIGTERM, SIGKILL after a grace period, its pipes closed, so
a test that fails half-way still leaves no process behind (the context manager's exit).
"""

from __future__ import annotations

import subprocess

from mailferry_testkit.served import Served


class ChildServer(Served):
    """Subclasses start ``_process`` in ``start`` and return ``self``."""

    stop_grace: float = 20.0  # seconds between SIGTERM and SIGKILL

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
