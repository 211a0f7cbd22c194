"""Running several roles as child processes on one machine, and keeping them running.

``mailferry run`` uses this: each role (fetch, stream, deliver) is its own process, as it
would be when scaled out, so a crash in one cannot take the others down and the same code
paths run in both set-ups. A role that exits is reported and started again with growing
back-off; stopping sends SIGTERM to every role and waits for each to finish what it holds
(a role commits offsets only for work that is durable, so a clean stop loses nothing).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Role:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        roles: list[Role],
        *,
        log_dir: Path,
        report: Callable[[str], None] = print,
        env: dict[str, str] | None = None,
        max_backoff: float = 30.0,
    ) -> None:
        self.roles = roles
        self.log_dir = log_dir
        self.report = report
        self.env = env
        self.max_backoff = max_backoff
        self._stopping = False

    def _start(self, role: Role) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{role.name}.log").open("ab")
        # a role starts with SIGUSR1 ignored (an ignored signal stays ignored across exec), so a
        # poll request that comes before the fetch role set its handler up cannot end it
        main = threading.current_thread() is threading.main_thread()  # signal.signal's rule
        handler = signal.signal(signal.SIGUSR1, signal.SIG_IGN) if main else None
        try:
            role.process = subprocess.Popen(
                role.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        finally:
            if main:
                signal.signal(signal.SIGUSR1, handler)
            log.close()
        role.started_at = time.monotonic()

    def start(self) -> None:
        for role in self.roles:
            self._start(role)
            self.report(f"started {role.name} (pid {role.process.pid if role.process else '?'})")

    def check(self) -> None:
        """Restart roles that exited; call this in a loop."""
        now = time.monotonic()
        for role in self.roles:
            if role.process is None:
                if now >= role.next_start and not self._stopping:
                    self._start(role)
                    self.report(f"restarted {role.name} (restart {role.restarts})")
                continue
            code = role.process.poll()
            if code is None or self._stopping:
                continue
            role.exits.append(code)
            role.process = None
            role.restarts += 1
            ran_for = now - role.started_at
            backoff = 1.0 if ran_for > 60 else min(self.max_backoff, 2.0 ** min(role.restarts, 5))
            role.next_start = now + backoff
            tail = self.log_tail(role.name)
            self.report(
                f"{role.name} exited with code {code} after {ran_for:.0f}s; restarting in {backoff:.0f}s"
                + (f"\n  last log line: {tail}" if tail else "")
            )

    def poll_now(self) -> None:
        """Pass SIGUSR1 (poll every mailbox now) on to the fetch roles that are running."""
        for role in self.roles:
            if role.name.split()[0].split("-")[0] == "fetch" and role.process is not None:
                try:
                    role.process.send_signal(signal.SIGUSR1)
                except ProcessLookupError:
                    pass

    def log_tail(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            lines = path.read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every role, wait for them to finish, SIGKILL what is left after ``timeout``."""
        self._stopping = True
        running = [r for r in self.roles if r.process is not None and r.process.poll() is None]
        for role in running:
            assert role.process is not None
            try:
                os.killpg(role.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for role in running:
            assert role.process is not None
            try:
                role.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                self.report(f"stopped {role.name}")
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(role.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                role.process.wait()
                self.report(f"killed {role.name}: it did not stop within {timeout:.0f}s")
